//! Kafka consumer offsets kept next to the data (cluster only). A worker stores the
//! batches it consumed and the offsets it consumed them up to in ONE transaction, so after
//! a crash or a rebalance the next owner of a partition resumes exactly after what was
//! stored: exactly-once into PostgreSQL without Kafka transactions. (A batch replayed
//! anyway, e.g. one the ingest node sent twice, is a duplicate by its agent sequence.)
use std::collections::{BTreeMap, HashMap};

use cordon_wire::FlowBatch;

use super::{PgStore, ingest};
use crate::store::*;

const UPSERT_OFFSETS: &str = "INSERT INTO consumer_offsets (consumer_group, topic, partition,
        next_offset)
    SELECT $1, $2, p, o FROM unnest($3::int[], $4::bigint[]) AS v(p, o)
    ON CONFLICT (consumer_group, topic, partition) DO UPDATE
        SET next_offset = GREATEST(consumer_offsets.next_offset, EXCLUDED.next_offset)";

impl PgStore {
    /// [`FlowStore::store_batches`] plus the consumer group's offsets: for each
    /// `(partition, next offset to read)` in `offsets` the stored offset becomes the
    /// larger of the two, in the same transaction as the batches. If the group fails,
    /// neither the batches nor the offsets are stored.
    pub fn store_consumed(
        &mut self,
        group: &str,
        topic: &str,
        offsets: &[(i32, i64)],
        batches: &[(&str, &FlowBatch)],
        compliance: &mut Compliance<'_>,
    ) -> Result<Vec<Result<Stored, StoreError>>, StoreError> {
        // One row per partition (a statement may not update a row twice): the highest.
        let mut highest: BTreeMap<i32, i64> = BTreeMap::new();
        for &(p, o) in offsets {
            let e = highest.entry(p).or_insert(o);
            *e = (*e).max(o);
        }
        let (partitions, next): (Vec<i32>, Vec<i64>) = highest.into_iter().unzip();
        self.tx(|tx, st| {
            let out = ingest::store_group(tx, st, batches, compliance)?;
            if !partitions.is_empty() {
                let upsert = st.get(tx, UPSERT_OFFSETS)?;
                tx.execute(&upsert, &[&group, &topic, &partitions, &next])?;
            }
            Ok(out)
        })
    }

    /// Where `group` is in each partition of `topic`: partition → next offset to read
    /// (partitions it never stored anything from are absent).
    pub fn consumer_offsets(
        &self,
        group: &str,
        topic: &str,
    ) -> Result<HashMap<i32, i64>, StoreError> {
        self.with(|c, _| {
            c.query(
                "SELECT partition, next_offset FROM consumer_offsets
                 WHERE consumer_group = $1 AND topic = $2",
                &[&group, &topic],
            )?
            .iter()
            .map(|r| Ok((r.try_get(0)?, r.try_get(1)?)))
            .collect()
        })
    }
}
