//! The spool: flow batches waiting for the collector's acknowledgement, on disk, bounded.
//!
//! Each batch gets the next sequence number and is written to its own file
//! (`NNNNNNNNNNNNNNNNNNNN.batch`, the encoded wire message) with write-to-temp, fsync and
//! rename, so a crash leaves either the whole batch or none. Acknowledged batches are
//! deleted. Past `max_bytes` the oldest batches are dropped and their records counted; the
//! count goes out with the next batch (`dropped_before`). The next sequence number is kept
//! in `next_seq` so a restart never reuses one, even with an empty spool (the collector
//! would take a reused number for a resend and drop the batch).
use std::{
    collections::BTreeMap,
    fs,
    io::Write,
    path::{Path, PathBuf},
};

use cordon_wire::{FlowBatch, FlowRecord, Message, decode, encode};

#[derive(Debug, thiserror::Error)]
pub enum SpoolError {
    #[error("spool {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("encoding a batch: {0}")]
    Encode(#[from] cordon_wire::WireError),
    #[error("a batch of {len} bytes is larger than the whole spool ({max} bytes)")]
    TooLarge { len: u64, max: u64 },
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> SpoolError + '_ {
    move |source| SpoolError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// What the spool had to give up, by reason.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SpoolDrops {
    /// Records in batches dropped because the spool was full.
    pub full_records: u64,
    /// Batch files found unreadable at start (and removed).
    pub corrupt_batches: u64,
}

pub struct Spool {
    dir: PathBuf,
    max_bytes: u64,
    /// seq → (file size, records)
    batches: BTreeMap<u64, (u64, u64)>,
    bytes: u64,
    next_seq: u64,
    /// Records dropped since the last batch was made (reported in the next one).
    unreported: u64,
    pub drops: SpoolDrops,
}

fn batch_path(dir: &Path, seq: u64) -> PathBuf {
    dir.join(format!("{seq:020}.batch"))
}

/// Writes `bytes` to `path` atomically and durably.
fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), SpoolError> {
    let tmp = path.with_extension("tmp");
    let mut f = fs::File::create(&tmp).map_err(io(&tmp))?;
    f.write_all(bytes).map_err(io(&tmp))?;
    f.sync_all().map_err(io(&tmp))?;
    fs::rename(&tmp, path).map_err(io(path))?;
    if let Some(dir) = path.parent() {
        fs::File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(io(dir))?;
    }
    Ok(())
}

impl Spool {
    /// Opens the spool in `dir` (created if needed), keeping what an earlier run left.
    pub fn open(dir: &Path, max_bytes: u64) -> Result<Self, SpoolError> {
        fs::create_dir_all(dir).map_err(io(dir))?;
        let mut spool = Spool {
            dir: dir.to_path_buf(),
            max_bytes,
            batches: BTreeMap::new(),
            bytes: 0,
            next_seq: 1,
            unreported: 0,
            drops: SpoolDrops::default(),
        };
        let next_path = dir.join("next_seq");
        if let Ok(text) = fs::read_to_string(&next_path) {
            spool.next_seq = text.trim().parse().unwrap_or(1).max(1);
        }
        for entry in fs::read_dir(dir).map_err(io(dir))?.flatten() {
            let path = entry.path();
            let name = entry.file_name();
            let name = name.to_string_lossy();
            if name.ends_with(".tmp") {
                // A write that never completed: the batch was not acknowledged as spooled.
                let _ = fs::remove_file(&path);
                continue;
            }
            let Some(seq) = name
                .strip_suffix(".batch")
                .and_then(|s| s.parse::<u64>().ok())
            else {
                continue;
            };
            match fs::read(&path).ok().and_then(|b| decode(&b).ok()) {
                Some(Message::FlowBatch(b)) if b.seq == seq => {
                    let len = entry.metadata().map(|m| m.len()).unwrap_or(0);
                    spool.batches.insert(seq, (len, b.records.len() as u64));
                    spool.bytes += len;
                    spool.next_seq = spool.next_seq.max(seq + 1);
                }
                _ => {
                    tracing::warn!(path = %path.display(), "unreadable spooled batch removed (counted in corrupt_batches)");
                    spool.drops.corrupt_batches += 1;
                    let _ = fs::remove_file(&path);
                }
            }
        }
        Ok(spool)
    }

    /// Spools `records` as the next batch; returns its sequence number. Makes room by
    /// dropping the oldest batches when the spool is full (counted).
    pub fn push(&mut self, records: Vec<FlowRecord>) -> Result<u64, SpoolError> {
        let seq = self.next_seq;
        let count = records.len() as u64;
        let mut msg = Message::FlowBatch(FlowBatch {
            seq,
            dropped_before: self.unreported,
            records,
        });
        let body = loop {
            let body = encode(&msg)?;
            let len = body.len() as u64;
            if len > self.max_bytes {
                return Err(SpoolError::TooLarge {
                    len,
                    max: self.max_bytes,
                });
            }
            if self.bytes + len <= self.max_bytes {
                break body;
            }
            let Some((old, (old_len, old_records))) = self.batches.pop_first() else {
                break body;
            };
            let _ = fs::remove_file(batch_path(&self.dir, old));
            self.bytes -= old_len;
            self.drops.full_records += old_records;
            self.unreported += old_records;
            // This batch is the first to go out after the drop: it reports it.
            if let Message::FlowBatch(b) = &mut msg {
                b.dropped_before = self.unreported;
            }
            tracing::warn!(
                seq = old,
                records = old_records,
                "spool full: oldest batch dropped"
            );
        };
        let len = body.len() as u64;
        // The sequence number is used up before the batch exists, so no crash can reuse it.
        self.next_seq = seq + 1;
        write_atomic(
            &self.dir.join("next_seq"),
            self.next_seq.to_string().as_bytes(),
        )?;
        write_atomic(&batch_path(&self.dir, seq), &body)?;
        self.batches.insert(seq, (len, count));
        self.bytes += len;
        self.unreported = 0;
        Ok(seq)
    }

    /// The collector stored every batch up to `seq`: forget them.
    pub fn ack(&mut self, seq: u64) {
        let keep = self.batches.split_off(&(seq.saturating_add(1)));
        for (old, (len, _)) in std::mem::replace(&mut self.batches, keep) {
            let _ = fs::remove_file(batch_path(&self.dir, old));
            self.bytes -= len;
        }
    }

    /// The collector already has everything up to `stored` (from its Welcome).
    ///
    /// Normally that acknowledges our batches up to `stored`. But a collector that has
    /// seen a number this spool never issued (`stored >= next_seq`) means our numbering
    /// started over (the spool directory was lost): our pending batches are then new data
    /// the collector would take for resends, so they are renumbered above `stored`.
    pub fn collector_has(&mut self, stored: u64) -> Result<(), SpoolError> {
        if stored < self.next_seq {
            self.ack(stored);
            return Ok(());
        }
        tracing::warn!(
            stored,
            next_seq = self.next_seq,
            "the collector is ahead of this spool's numbering (spool lost?): renumbering pending batches"
        );
        let old: Vec<u64> = self.batches.keys().copied().collect();
        let mut next = stored + 1;
        for seq in old {
            let body = self.read(seq)?;
            let Ok(Message::FlowBatch(mut batch)) = decode(&body) else {
                continue;
            };
            batch.seq = next;
            let body = encode(&Message::FlowBatch(batch))?;
            write_atomic(&batch_path(&self.dir, next), &body)?;
            let _ = fs::remove_file(batch_path(&self.dir, seq));
            if let Some((_, records)) = self.batches.remove(&seq) {
                self.bytes = self
                    .bytes
                    .saturating_sub(self.batches.get(&seq).map_or(0, |b| b.0));
                self.batches.insert(next, (body.len() as u64, records));
            }
            next += 1;
        }
        self.bytes = self.batches.values().map(|b| b.0).sum();
        self.next_seq = next;
        write_atomic(
            &self.dir.join("next_seq"),
            self.next_seq.to_string().as_bytes(),
        )
    }

    /// Encoded batches not yet acknowledged, oldest first (to send after a reconnect).
    pub fn pending(&self) -> impl Iterator<Item = Result<Vec<u8>, SpoolError>> + '_ {
        self.batches.keys().map(|seq| self.read(*seq))
    }

    /// One spooled batch's encoded body.
    pub fn read(&self, seq: u64) -> Result<Vec<u8>, SpoolError> {
        let path = batch_path(&self.dir, seq);
        fs::read(&path).map_err(io(&path))
    }

    pub fn pending_batches(&self) -> usize {
        self.batches.len()
    }

    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    pub fn next_seq(&self) -> u64 {
        self.next_seq
    }
}

#[cfg(test)]
mod tests;
