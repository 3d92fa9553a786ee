//! Policy versions: drafts, publishing (the previous one is retired), refusals.
use super::*;
use crate::store::*;

fn policies_go_from_draft_to_published_to_retired(f: &Fixture) {
    let mut s = f.open();
    assert!(s.policy(None).expect("none").is_none());
    assert!(s.policies().expect("none").is_empty());
    let v1 = s
        .apply_policy("base", "name: base\n", "alice", T0)
        .expect("v1");
    let v2 = s
        .apply_policy("base", "name: base2\n", "bob", T0 + 1)
        .expect("v2");
    assert!(v2 > v1);
    assert!(s.policy(None).expect("none published").is_none());
    let d = s.policy(Some(v1)).expect("v1").expect("v1");
    assert_eq!(
        d,
        PolicyRow {
            version: v1,
            name: "base".into(),
            state: "draft".into(),
            created_ns: T0,
            created_by: "alice".into(),
            published_ns: None,
            published_by: None,
            body: "name: base\n".into(),
        }
    );
    assert_eq!(
        s.publish_policy(v1, "carol", T0 + 2).expect("publish"),
        Ok(())
    );
    let p = s.policy(None).expect("published").expect("v1");
    assert_eq!(
        (
            p.version,
            p.state.as_str(),
            p.published_ns,
            p.published_by.as_deref()
        ),
        (v1, "published", Some(T0 + 2), Some("carol"))
    );
    assert_eq!(
        s.publish_policy(v1, "carol", T0 + 3).expect("again"),
        Err(PublishRefusal::NotDraft("published".into()))
    );
    assert_eq!(
        s.publish_policy(999, "carol", T0 + 3).expect("unknown"),
        Err(PublishRefusal::NoSuchVersion)
    );
    assert_eq!(s.publish_policy(v2, "dave", T0 + 4).expect("v2"), Ok(()));
    assert_eq!(s.policy(None).expect("published").expect("v2").version, v2);
    let states: Vec<(i64, String)> = s
        .policies()
        .expect("list")
        .into_iter()
        .map(|p| (p.version, p.state))
        .collect();
    assert_eq!(
        states,
        vec![(v2, "published".to_string()), (v1, "retired".to_string())]
    );
    assert_eq!(
        s.publish_policy(v1, "carol", T0 + 5).expect("retired"),
        Err(PublishRefusal::NotDraft("retired".into()))
    );
    assert!(s.policy(Some(999)).expect("unknown").is_none());
}

fn two_connections_publishing_at_once_leave_one_published(f: &Fixture) {
    let mut s = f.open();
    let drafts: Vec<i64> = (0..8)
        .map(|i| {
            s.apply_policy("p", &format!("name: p{i}\n"), "t", T0)
                .expect("draft")
        })
        .collect();
    let (a, b) = drafts.split_at(4);
    std::thread::scope(|scope| {
        for half in [a, b] {
            let mut s = f.open();
            scope.spawn(move || {
                for v in half {
                    assert_eq!(s.publish_policy(*v, "t", T0 + 1).expect("publish"), Ok(()));
                }
            });
        }
    });
    let published = s
        .policies()
        .expect("list")
        .into_iter()
        .filter(|p| p.state == "published")
        .count();
    assert_eq!(published, 1);
}

both!(
    policies_go_from_draft_to_published_to_retired,
    two_connections_publishing_at_once_leave_one_published,
);
