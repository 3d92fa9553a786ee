//! Protocol version negotiation: both sides announce a range, the highest common version
//! wins, and no overlap is a clear error naming both ranges.

/// Oldest protocol version this build speaks.
pub const PROTOCOL_MIN: u16 = 1;
/// Newest protocol version this build speaks.
pub const PROTOCOL_MAX: u16 = 1;

/// The version to use with a peer speaking `[min, max]`, or an explanation.
pub fn negotiate(peer_min: u16, peer_max: u16) -> Result<u16, String> {
    if peer_min > peer_max {
        return Err(format!(
            "peer sent an empty version range {peer_min}..={peer_max}"
        ));
    }
    let best = peer_max.min(PROTOCOL_MAX);
    if best < peer_min.max(PROTOCOL_MIN) {
        return Err(format!(
            "no common protocol version: peer speaks {peer_min}..={peer_max}, this build {PROTOCOL_MIN}..={PROTOCOL_MAX}"
        ));
    }
    Ok(best)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn picks_the_highest_common_version() {
        assert_eq!(negotiate(1, 1), Ok(1));
        assert_eq!(negotiate(1, 9), Ok(PROTOCOL_MAX));
    }

    #[test]
    fn refuses_disjoint_or_empty_ranges() {
        assert!(negotiate(PROTOCOL_MAX + 1, PROTOCOL_MAX + 5).is_err());
        assert!(negotiate(0, 0).is_err());
        assert!(negotiate(3, 2).is_err_and(|e| e.contains("empty")));
    }
}
