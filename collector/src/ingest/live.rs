//! Which agents are connected right now (what the API's `connected` shows, and where
//! commands will be delivered).
use std::{
    collections::HashMap,
    net::SocketAddr,
    sync::{Arc, Mutex},
};

use crate::metrics::Metrics;

#[derive(Clone, Debug)]
pub struct Connected {
    pub remote: SocketAddr,
    pub since_ns: u64,
    /// quinn's id of the connection: a reconnect replaces the entry, and only the
    /// connection that owns an entry removes it.
    conn_id: usize,
    conn: quinn::Connection,
    /// Wakes the connection's task: commands are waiting in the store.
    poke: Arc<tokio::sync::Notify>,
}

#[derive(Default)]
pub struct Live {
    agents: Mutex<HashMap<String, Connected>>,
}

/// Removes its agent's entry when its connection ends.
pub struct LiveGuard<'a> {
    live: &'a Live,
    agent: String,
    conn_id: usize,
    metrics: &'a Metrics,
    poke: Arc<tokio::sync::Notify>,
}

impl LiveGuard<'_> {
    /// What wakes this connection when commands are queued for it.
    pub fn poke(&self) -> Arc<tokio::sync::Notify> {
        self.poke.clone()
    }
}

impl Live {
    pub fn connected<'a>(
        &'a self,
        agent: &str,
        conn: &quinn::Connection,
        now_ns: u64,
        metrics: &'a Metrics,
    ) -> LiveGuard<'a> {
        let entry = Connected {
            remote: conn.remote_address(),
            since_ns: now_ns,
            conn_id: conn.stable_id(),
            conn: conn.clone(),
            poke: Arc::new(tokio::sync::Notify::new()),
        };
        let poke = entry.poke.clone();
        if let Ok(mut m) = self.agents.lock() {
            m.insert(agent.to_string(), entry);
            metrics.agents_connected.set(m.len() as i64);
        }
        LiveGuard {
            live: self,
            agent: agent.to_string(),
            conn_id: conn.stable_id(),
            metrics,
            poke,
        }
    }

    /// The agent's current connection, if it has one.
    pub fn get(&self, agent: &str) -> Option<Connected> {
        self.agents.lock().ok()?.get(agent).cloned()
    }

    /// Tells the agent's connection, if it has one, that commands are waiting.
    pub fn poke(&self, agent: &str) -> bool {
        let p = self
            .agents
            .lock()
            .ok()
            .and_then(|m| m.get(agent).map(|c| c.poke.clone()));
        p.map(|p| p.notify_one()).is_some()
    }

    /// Pokes every connection (after missed notifications: commands may be waiting).
    pub fn poke_all(&self) -> usize {
        let pokes: Vec<_> = match self.agents.lock() {
            Ok(m) => m.values().map(|c| c.poke.clone()).collect(),
            Err(_) => return 0,
        };
        for p in &pokes {
            p.notify_one();
        }
        pokes.len()
    }

    /// Agents connected to this node now.
    pub fn count(&self) -> usize {
        self.agents.lock().map(|m| m.len()).unwrap_or(0)
    }

    /// Closes the agent's connection, if it has one (after a revocation).
    pub fn disconnect(&self, agent: &str, reason: &str) -> bool {
        let conn = self
            .agents
            .lock()
            .ok()
            .and_then(|m| m.get(agent).map(|c| c.conn.clone()));
        match conn {
            Some(c) => {
                c.close(2u32.into(), reason.as_bytes());
                true
            }
            None => false,
        }
    }
}

impl Drop for LiveGuard<'_> {
    fn drop(&mut self) {
        if let Ok(mut m) = self.live.agents.lock() {
            if m.get(&self.agent)
                .is_some_and(|c| c.conn_id == self.conn_id)
            {
                m.remove(&self.agent);
            }
            self.metrics.agents_connected.set(m.len() as i64);
        }
    }
}
