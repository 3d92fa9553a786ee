//! API and join tokens (as `tokens::tests` checks them on SQLite) and enrollments.
use super::*;
use crate::store::*;

fn h(n: u8) -> String {
    crate::tokens::hash(&format!("cdn_{}", format!("{n:02x}").repeat(32)))
}

fn token_checks_scope_expiry_uses_and_revocation(f: &Fixture) {
    let mut s = f.open();
    s.create_token("reader", Scope::Read, &h(1), T0, None, None)
        .expect("read");
    let admin = s
        .create_token("admin", Scope::Admin, &h(2), T0, Some(T0 + 10), None)
        .expect("admin");
    s.create_token("join", Scope::Enroll, &h(3), T0, None, Some(2))
        .expect("enroll");
    let mut check = |n: u8, needed: Scope, at: u64| {
        s.use_token(&h(n), needed, at)
            .expect("store")
            .map(|t| t.name)
    };
    assert_eq!(check(1, Scope::Read, T0), Ok("reader".into()));
    assert_eq!(check(1, Scope::Admin, T0), Err(TokenRefusal::Scope));
    assert_eq!(check(1, Scope::Enroll, T0), Err(TokenRefusal::Scope));
    assert_eq!(check(2, Scope::Read, T0 + 9), Ok("admin".into()));
    assert_eq!(check(2, Scope::Admin, T0 + 10), Err(TokenRefusal::Expired));
    // A join token is not an API token, and it is good for its number of uses.
    assert_eq!(check(3, Scope::Read, T0), Err(TokenRefusal::Scope));
    assert_eq!(check(3, Scope::Enroll, T0), Ok("join".into()));
    assert_eq!(check(3, Scope::Enroll, T0), Ok("join".into()));
    assert_eq!(check(3, Scope::Enroll, T0), Err(TokenRefusal::UsedUp));
    assert_eq!(check(9, Scope::Read, T0), Err(TokenRefusal::Unknown));
    assert!(s.revoke_token(admin).expect("revoke"));
    assert_eq!(
        s.use_token(&h(2), Scope::Read, T0).expect("store"),
        Err(TokenRefusal::Revoked)
    );
    assert!(!s.revoke_token(999).expect("unknown"));
    let listed = s.tokens().expect("list");
    assert_eq!(
        listed.iter().map(|t| t.name.as_str()).collect::<Vec<_>>(),
        ["join", "admin", "reader"]
    );
    assert_eq!(
        listed[0],
        TokenInfo {
            id: listed[0].id,
            name: "join".into(),
            scope: Scope::Enroll,
            created_ns: T0,
            expires_ns: None,
            uses_left: Some(0),
            revoked: false,
        }
    );
    assert_eq!(
        (listed[1].expires_ns, listed[1].revoked),
        (Some(T0 + 10), true)
    );
    // The hash is the key: a second token with the same one is an error.
    assert!(
        s.create_token("dup", Scope::Read, &h(1), T0, None, None)
            .is_err()
    );
}

fn the_last_use_of_a_join_token_goes_to_one_connection(f: &Fixture) {
    let mut s = f.open();
    s.create_token("join", Scope::Enroll, &h(7), T0, None, Some(3))
        .expect("enroll");
    let ok = std::sync::atomic::AtomicUsize::new(0);
    std::thread::scope(|scope| {
        for _ in 0..4 {
            let mut s = f.open();
            let ok = &ok;
            scope.spawn(move || {
                for _ in 0..3 {
                    if s.use_token(&h(7), Scope::Enroll, T0).expect("use").is_ok() {
                        ok.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    }
                }
            });
        }
    });
    assert_eq!(ok.into_inner(), 3, "exactly the token's three uses");
}

fn enrollments_take_agent_ids(f: &Fixture) {
    let mut s = f.open();
    let join = s
        .create_token("join", Scope::Enroll, &h(4), T0, None, None)
        .expect("enroll");
    assert!(!s.agent_id_taken("a-agent").expect("free"));
    s.record_enrollment("a-agent", "web", join, "ab:cd", T0)
        .expect("enroll");
    assert!(s.agent_id_taken("a-agent").expect("enrolled"));
    assert!(
        s.record_enrollment("a-agent", "web", join, "ab:cd", T0)
            .is_err(),
        "an agent id is enrolled once"
    );
    s.host_connected("b-agent", "db", "0.1.0", "ebpf", T0)
        .expect("b");
    assert!(s.agent_id_taken("b-agent").expect("connected"));
}

both!(
    token_checks_scope_expiry_uses_and_revocation,
    the_last_use_of_a_join_token_goes_to_one_connection,
    enrollments_take_agent_ids,
);
