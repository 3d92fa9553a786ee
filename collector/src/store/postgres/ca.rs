//! The collector CA shared by every node of a cluster (cluster only): the first node to
//! start stores the CA it generated; every node, including ones racing it at first start,
//! then uses the one stored. The private key is kept in the database: whoever can read
//! the `collector_ca` table can issue agent certificates, so grant it to the collector's
//! role only.
use super::PgStore;
use crate::store::{StoreError, ns};

impl PgStore {
    /// The shared CA: (certificate PEM, private key PEM), if one was stored.
    pub fn ca(&self) -> Result<Option<(String, String)>, StoreError> {
        self.with(|c, _| {
            match c.query_opt("SELECT cert_pem, key_pem FROM collector_ca WHERE id", &[])? {
                Some(r) => Ok(Some((r.try_get(0)?, r.try_get(1)?))),
                None => Ok(None),
            }
        })
    }

    /// Stores this CA unless one is stored already, and returns the one that is stored
    /// now: this node's, or the one another node stored first (then use that one and
    /// forget the one generated).
    pub fn put_ca_if_absent(
        &mut self,
        cert_pem: &str,
        key_pem: &str,
    ) -> Result<(String, String), StoreError> {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0);
        self.tx(|tx, _| {
            tx.execute(
                "INSERT INTO collector_ca (id, cert_pem, key_pem, created_ns)
                 VALUES (true, $1, $2, $3) ON CONFLICT (id) DO NOTHING",
                &[&cert_pem, &key_pem, &ns(now)],
            )?;
            // READ COMMITTED: this statement sees the row another node committed while
            // the insert above waited for it.
            let r = tx.query_one("SELECT cert_pem, key_pem FROM collector_ca WHERE id", &[])?;
            Ok((r.try_get(0)?, r.try_get(1)?))
        })
    }
}
