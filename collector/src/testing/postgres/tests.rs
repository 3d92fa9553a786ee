//! The test server itself: fresh databases, password authentication, no root.
use super::*;

fn connect(cfg: &PgConfig) -> Result<::postgres::Client, ::postgres::Error> {
    let mut c: ::postgres::Config = cfg.url.parse()?;
    if let Some(p) = &cfg.password {
        c.password(p);
    }
    c.connect(::postgres::NoTls)
}

#[test]
fn each_test_gets_a_fresh_database_behind_a_password() {
    let Some(a) = test_database("each_test_gets_a_fresh_database_behind_a_password") else {
        return;
    };
    let b = PgServer::shared().database();
    assert_ne!(a.url, b.url);
    let mut c = connect(&a).expect("connect");
    let row = c
        .query_one(
            "SELECT current_user::text, current_database()::text,
                    (SELECT count(*) FROM pg_tables WHERE schemaname = 'public')",
            &[],
        )
        .expect("query");
    assert_eq!(row.get::<_, String>(0), USER);
    assert_eq!(row.get::<_, i64>(2), 0, "a fresh database is empty");
    let wrong = PgConfig {
        password: Some("wrong".into()),
        ..a.clone()
    };
    let e = connect(&wrong).err().expect("a wrong password is refused");
    assert_eq!(
        e.as_db_error().map(|d| d.code().code()),
        Some("28P01"),
        "{e:?}"
    );
    // As root, the server runs as an unprivileged user.
    let pm = fs::read_to_string(PgServer::shared().dir().join("data/postmaster.pid"))
        .expect("postmaster.pid");
    let pid = pm.lines().next().expect("pid").trim();
    let status = fs::read_to_string(format!("/proc/{pid}/status")).expect("status");
    let uid = status
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))
        .and_then(|l| l.split_whitespace().next())
        .expect("uid");
    assert_ne!(uid, "0", "the test server runs as root");
}
