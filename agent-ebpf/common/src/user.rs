//! User-space helpers: `aya::Pod` so the types can be read from maps and ring buffers,
//! and byte-level decoding of ring-buffer records.
use crate::{
    AllowEntry, EVENT_EXEC, EVENT_EXIT, EVENT_FLOW, EnforceConfig, ExecEvent, ExitEvent,
    FlowCounters, FlowEvent, FlowKey, ListenKey, ProcIdentity, ProgConfig, RefusedCounters,
};

// SAFETY: all of these are #[repr(C)] plain data with explicit padding and no invalid bit
// patterns (integers and byte arrays only).
unsafe impl aya::Pod for FlowKey {}
unsafe impl aya::Pod for FlowCounters {}
unsafe impl aya::Pod for ProcIdentity {}
unsafe impl aya::Pod for ListenKey {}
unsafe impl aya::Pod for ProgConfig {}
unsafe impl aya::Pod for EnforceConfig {}
unsafe impl aya::Pod for AllowEntry {}
unsafe impl aya::Pod for RefusedCounters {}

/// A decoded ring-buffer record (the large exec record is boxed).
#[derive(Clone, Debug)]
pub enum Event {
    Flow(FlowEvent),
    Exec(alloc::boxed::Box<ExecEvent>),
    Exit(ExitEvent),
}

/// Why a ring-buffer record could not be decoded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DecodeError {
    /// Fewer bytes than the header or the struct its kind names.
    Short { kind: u32, len: usize },
    /// A kind this build does not know.
    UnknownKind(u32),
}

fn read<T: Copy>(bytes: &[u8]) -> Option<T> {
    if bytes.len() < core::mem::size_of::<T>() {
        return None;
    }
    // SAFETY: length checked above; T is plain data (see the Pod impls), and
    // read_unaligned does not require the buffer to be aligned.
    Some(unsafe { core::ptr::read_unaligned(bytes.as_ptr().cast::<T>()) })
}

impl Event {
    /// Decodes one record, checking its length against the kind it claims.
    pub fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
        let kind = read::<u32>(bytes).ok_or(DecodeError::Short {
            kind: 0,
            len: bytes.len(),
        })?;
        let short = DecodeError::Short {
            kind,
            len: bytes.len(),
        };
        match kind {
            EVENT_FLOW => read(bytes).map(Event::Flow).ok_or(short),
            EVENT_EXEC => read(bytes)
                .map(|e| Event::Exec(alloc::boxed::Box::new(e)))
                .ok_or(short),
            EVENT_EXIT => read(bytes).map(Event::Exit).ok_or(short),
            other => Err(DecodeError::UnknownKind(other)),
        }
    }
}

/// View of a plain-data value as bytes (what the kernel writes), for tests and encoders.
pub fn as_bytes<T: Copy>(value: &T) -> &[u8] {
    // SAFETY: T is plain #[repr(C)] data without padding holes left uninitialised by the
    // callers in this crate (every struct has explicit padding fields).
    unsafe {
        core::slice::from_raw_parts((value as *const T).cast::<u8>(), core::mem::size_of::<T>())
    }
}

/// The NUL-terminated prefix of a fixed-size kernel string.
pub fn c_str(bytes: &[u8]) -> &[u8] {
    let end = bytes.iter().position(|&b| b == 0).unwrap_or(bytes.len());
    &bytes[..end]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{AF_INET, COMM_LEN, ExecArgs, ExitEvent, ORIGIN_LOCAL, OWNER_SOCKET};

    fn flow_event() -> FlowEvent {
        let mut owner = ProcIdentity::zeroed();
        owner.tgid = 1234;
        owner.comm[..4].copy_from_slice(b"curl");
        FlowEvent {
            kind: EVENT_FLOW,
            origin: ORIGIN_LOCAL,
            key: FlowKey {
                local_addr: [10, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0],
                remote_addr: [10, 0, 0, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0],
                local_port: 40000,
                remote_port: 80,
                family: AF_INET,
                proto: 6,
                _pad: [0; 2],
            },
            ktime_ns: 99,
            cookie: 7,
            bytes: 60,
            owner_source: OWNER_SOCKET,
            owner,
        }
    }

    #[test]
    fn flow_event_round_trips() {
        let ev = flow_event();
        let Ok(Event::Flow(back)) = Event::decode(as_bytes(&ev)) else {
            panic!("not a flow event");
        };
        assert_eq!(back.key, ev.key);
        assert_eq!(back.owner, ev.owner);
        assert_eq!((back.cookie, back.bytes, back.ktime_ns), (7, 60, 99));
        assert_eq!(c_str(&back.owner.comm[..COMM_LEN]), b"curl");
    }

    #[test]
    fn exec_and_exit_events_round_trip() {
        let mut args = ExecArgs {
            argc: 2,
            truncated: 0,
            args: [[0; crate::EXEC_ARG_LEN]; crate::EXEC_ARGS_MAX],
        };
        args.args[0][..4].copy_from_slice(b"bash");
        let ev = ExecEvent {
            kind: EVENT_EXEC,
            tgid: 5,
            pid: 5,
            ppid: 1,
            uid: 0,
            gid: 0,
            cgroup_id: 3,
            ktime_ns: 4,
            comm: [0; COMM_LEN],
            filename: [0; crate::EXEC_FILENAME_LEN],
            args,
        };
        let Ok(Event::Exec(back)) = Event::decode(as_bytes(&ev)) else {
            panic!("not an exec event");
        };
        assert_eq!((back.tgid, back.ppid, back.args.argc), (5, 1, 2));
        assert_eq!(c_str(&back.args.args[0]), b"bash");
        let exit = ExitEvent {
            kind: EVENT_EXIT,
            tgid: 5,
            cgroup_id: 3,
            ktime_ns: 9,
        };
        assert!(matches!(Event::decode(as_bytes(&exit)), Ok(Event::Exit(e)) if e.tgid == 5));
    }

    #[test]
    fn short_and_unknown_records_are_errors_not_panics() {
        let ev = flow_event();
        let bytes = as_bytes(&ev);
        assert_eq!(
            Event::decode(&bytes[..bytes.len() - 1]).err(),
            Some(DecodeError::Short {
                kind: EVENT_FLOW,
                len: bytes.len() - 1
            })
        );
        assert!(matches!(
            Event::decode(&[1, 2]),
            Err(DecodeError::Short { .. })
        ));
        assert_eq!(
            Event::decode(&[9, 0, 0, 0, 0, 0]).err(),
            Some(DecodeError::UnknownKind(9))
        );
        // Every prefix of every record decodes or errors; none panics.
        for n in 0..bytes.len() {
            let _ = Event::decode(&bytes[..n]);
        }
    }
}
