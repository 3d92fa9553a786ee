use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use super::*;
use crate::testutil::temp_dir;

/// A backend that records calls and whose "kernel" can be wiped by the test.
#[derive(Clone, Default)]
struct Fake {
    inner: Arc<Mutex<FakeState>>,
}

#[derive(Default)]
struct FakeState {
    in_force: bool,
    applies: u32,
    clears: u32,
    last_exc: Option<Exceptions>,
    fail_apply: bool,
}

impl Backend for Fake {
    fn name(&self) -> &'static str {
        "fake"
    }
    fn apply(&mut self, _iso: &Isolation, exc: &Exceptions) -> Result<(), EnforcerError> {
        let mut s = self.inner.lock().unwrap();
        if s.fail_apply {
            return Err(EnforcerError::Invalid {
                field: "fake",
                detail: "apply refused".into(),
            });
        }
        s.in_force = true;
        s.applies += 1;
        s.last_exc = Some(exc.clone());
        Ok(())
    }
    fn clear(&mut self) -> Result<(), EnforcerError> {
        let mut s = self.inner.lock().unwrap();
        s.in_force = false;
        s.clears += 1;
        Ok(())
    }
    fn in_force(&self) -> Result<bool, EnforcerError> {
        Ok(self.inner.lock().unwrap().in_force)
    }
}

struct Rig {
    fake: Fake,
    clock: Arc<AtomicU64>,
    path: std::path::PathBuf,
}

impl Rig {
    fn new() -> Rig {
        Rig {
            fake: Fake::default(),
            clock: Arc::new(AtomicU64::new(1_000)),
            path: temp_dir("enf").join("enforcer.json"),
        }
    }
    fn enforcer(&self) -> Enforcer {
        let clock = self.clock.clone();
        Enforcer::new(Box::new(self.fake.clone()), &self.path)
            .unwrap()
            .with_clock(move || clock.load(Ordering::Relaxed))
    }
    fn set_now(&self, t: u64) {
        self.clock.store(t, Ordering::Relaxed);
    }
    fn applies(&self) -> u32 {
        self.fake.inner.lock().unwrap().applies
    }
}

fn iso(id: u64, expires: Option<u64>) -> Isolation {
    Isolation {
        command_id: id,
        reason: "c2 beacon".into(),
        by: "alice".into(),
        since_unix: 1_000,
        expires_at_unix: expires,
    }
}

fn exc() -> Exceptions {
    Exceptions {
        management: vec!["10.0.0.1:4433".parse().unwrap()],
        allow: vec!["10.0.0.9:22/tcp".parse().unwrap()],
    }
}

#[test]
fn same_command_id_is_a_no_op() {
    let rig = Rig::new();
    let mut e = rig.enforcer();
    assert_eq!(
        e.isolate(iso(5, None), &exc()).unwrap().action,
        Action::Isolate
    );
    assert_eq!(
        e.isolate(iso(5, None), &exc()).unwrap().action,
        Action::Unchanged
    );
    assert_eq!(rig.applies(), 1);
    // A re-delivered command that was since released does not isolate again.
    assert_eq!(e.release("done", "bob").unwrap().action, Action::Release);
    assert_eq!(
        e.isolate(iso(5, None), &exc()).unwrap().action,
        Action::Unchanged
    );
    assert!(e.status().unwrap().isolated.is_none());
    // A new id does.
    assert_eq!(
        e.isolate(iso(6, None), &exc()).unwrap().action,
        Action::Isolate
    );
    assert_eq!(rig.applies(), 2);
    let hist: Vec<Action> = e.state().history.iter().map(|c| c.action).collect();
    assert_eq!(hist, [Action::Isolate, Action::Release, Action::Isolate]);
}

#[test]
fn same_id_reasserts_when_the_ruleset_is_gone() {
    let rig = Rig::new();
    let mut e = rig.enforcer();
    e.isolate(iso(5, None), &exc()).unwrap();
    rig.fake.inner.lock().unwrap().in_force = false;
    assert_eq!(
        e.isolate(iso(5, None), &exc()).unwrap().action,
        Action::Reassert
    );
    assert!(rig.fake.inner.lock().unwrap().in_force);
}

#[test]
fn refuses_isolation_without_management_channel() {
    let rig = Rig::new();
    let mut e = rig.enforcer();
    let none = Exceptions::default();
    let err = e.isolate(iso(1, None), &none).unwrap_err().to_string();
    assert!(err.contains("management"), "{err}");
    assert_eq!(rig.applies(), 0);
}

#[test]
fn failed_apply_leaves_state_unchanged() {
    let rig = Rig::new();
    let mut e = rig.enforcer();
    rig.fake.inner.lock().unwrap().fail_apply = true;
    assert!(e.isolate(iso(1, None), &exc()).is_err());
    assert!(e.state().isolated.is_none());
    assert!(rig.enforcer().state().isolated.is_none());
}

#[test]
fn expiry_with_injected_clock() {
    let rig = Rig::new();
    let mut e = rig.enforcer();
    e.isolate(iso(9, Some(1_060)), &exc()).unwrap();
    assert_eq!(e.tick(1_059).unwrap(), None);
    let c = e.tick(1_060).unwrap().expect("expired");
    assert_eq!(
        (c.action, c.command_id, c.at_unix),
        (Action::Expire, Some(9), 1_060)
    );
    assert!(!rig.fake.inner.lock().unwrap().in_force);
    assert!(e.state().isolated.is_none());
    assert_eq!(e.tick(2_000).unwrap(), None);
    // An isolation whose expiry already passed is refused.
    rig.set_now(5_000);
    let err = e.isolate(iso(10, Some(4_000)), &exc()).unwrap_err();
    assert!(err.to_string().contains("expires_at_unix"));
}

#[test]
fn tick_reasserts_a_flushed_ruleset() {
    let rig = Rig::new();
    let mut e = rig.enforcer();
    e.isolate(iso(3, None), &exc()).unwrap();
    assert_eq!(e.tick(1_001).unwrap(), None);
    rig.fake.inner.lock().unwrap().in_force = false; // `nft flush ruleset`
    let c = e.tick(1_002).unwrap().expect("reasserted");
    assert_eq!((c.action, c.command_id), (Action::Reassert, Some(3)));
    assert!(e.status().unwrap().in_force);
}

#[test]
fn restore_reapplies_or_expires_from_the_state_file() {
    let rig = Rig::new();
    {
        let mut e = rig.enforcer();
        e.isolate(iso(4, Some(2_000)), &exc()).unwrap();
    }
    // Reboot: the kernel forgot, the file did not.
    rig.fake.inner.lock().unwrap().in_force = false;
    let mut e = rig.enforcer();
    assert_eq!(e.state().isolated.as_ref().map(|i| i.command_id), Some(4));
    let now_cfg = Exceptions {
        management: vec!["10.0.0.2:4433".parse().unwrap()],
        allow: vec![],
    };
    let c = e.restore(Some(&now_cfg)).unwrap();
    assert_eq!(c.action, Action::Restore);
    let applied = rig.fake.inner.lock().unwrap().last_exc.clone().unwrap();
    assert_eq!(
        applied.management.len(),
        2,
        "old and new collector both kept"
    );
    assert_eq!(applied.allow.len(), 1);
    // Stopped past the expiry: restore lifts it.
    rig.set_now(2_001);
    let mut e = rig.enforcer();
    let c = e.restore(None).unwrap();
    assert_eq!(c.action, Action::Expire);
    assert!(!rig.fake.inner.lock().unwrap().in_force);
    assert!(rig.enforcer().state().isolated.is_none());
}

#[test]
fn release_clears_even_without_state_and_records_who() {
    let rig = Rig::new();
    let mut e = rig.enforcer();
    assert_eq!(
        e.release("nothing", "root").unwrap().action,
        Action::Unchanged
    );
    rig.fake.inner.lock().unwrap().in_force = true; // stale table, no state
    let c = e.release("break-glass", "carol").unwrap();
    assert_eq!((c.action, c.by.as_str()), (Action::Release, "carol"));
    assert!(!rig.fake.inner.lock().unwrap().in_force);
    let saved = StateStore::new(&rig.path).load().unwrap();
    assert_eq!(saved.history.last().unwrap().by, "carol");
}

#[test]
fn running_enforcer_honours_a_local_release() {
    let rig = Rig::new();
    let mut agent = rig.enforcer();
    agent.isolate(iso(8, None), &exc()).unwrap();
    // Break-glass from another process on the same state file.
    let mut cli = rig.enforcer();
    assert_eq!(
        cli.release("break-glass", "local:carol").unwrap().action,
        Action::Release
    );
    // The agent's next tick adopts the release instead of re-asserting.
    let c = agent.tick(1_001).unwrap().expect("reported");
    assert_eq!((c.action, c.by.as_str()), (Action::Release, "local:carol"));
    assert!(!rig.fake.inner.lock().unwrap().in_force);
    assert_eq!(agent.tick(1_002).unwrap(), None);
    assert!(agent.state().isolated.is_none());
}
