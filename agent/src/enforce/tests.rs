use std::sync::{Arc, Mutex};

use cordon_enforcer::{Backend, EnforcerError, Exceptions, Isolation};
use cordon_wire::{Command, CommandKind};

use super::*;
use crate::uplink::{Collector, KnownAddrs};

/// A backend that remembers the exceptions it was given.
#[derive(Clone, Default)]
struct Fake(Arc<Mutex<Option<Exceptions>>>);

impl Backend for Fake {
    fn name(&self) -> &'static str {
        "fake"
    }
    fn apply(&mut self, _iso: &Isolation, exc: &Exceptions) -> Result<(), EnforcerError> {
        *self.0.lock().expect("lock") = Some(exc.clone());
        Ok(())
    }
    fn clear(&mut self) -> Result<(), EnforcerError> {
        *self.0.lock().expect("lock") = None;
        Ok(())
    }
    fn in_force(&self) -> Result<bool, EnforcerError> {
        Ok(self.0.lock().expect("lock").is_some())
    }
}

#[tokio::test]
async fn an_isolation_keeps_every_collector_address_the_uplink_found() {
    let tmp = tempfile::tempdir().expect("tmp");
    let fake = Fake::default();
    let enforcer =
        Enforcer::new(Box::new(fake.clone()), &tmp.path().join("state.json")).expect("enforcer");
    let at_start: SocketAddr = "10.0.0.5:7443".parse().expect("addr");
    let found_later: SocketAddr = "10.0.0.6:7443".parse().expect("addr");
    let known = KnownAddrs::default();
    // What a later round found (a name now pointing at another node, say).
    known
        .resolve(&[
            Collector::new(at_start.into(), ""),
            Collector::new(found_later.into(), ""),
        ])
        .await;
    let mut handler = EnforcerHandler {
        enforcer: Arc::new(Mutex::new(enforcer)),
        exceptions: exceptions(&[at_start], &EnforcerConfig::default()),
        view: Arc::default(),
        known,
    };
    let result = handler.handle(&Command {
        id: 1,
        kind: CommandKind::Isolate {
            reason: "test".into(),
            expires_at: 0,
            allow: Vec::new(),
        },
    });
    assert!(result.ok, "{}", result.message);
    let applied = fake.0.lock().expect("lock").clone().expect("isolated");
    assert_eq!(applied.management, vec![at_start, found_later]);
}
