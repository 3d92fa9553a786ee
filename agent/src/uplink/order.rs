//! The order in which an agent tries its collectors.
//!
//! **Spread.** An agent's first candidate, its *home*, is a stable hash of its agent id
//! (the common name of its certificate) modulo the number of candidates. If every agent
//! began with the first collector listed, a fleet restarted together (or reconnecting
//! after a network outage) would all land on one node, and stay there until it fell over.
//! With the hash, agents spread evenly over the nodes, and each agent goes back to the
//! same node whenever it starts over (after its own restart, or after a round in which no
//! collector answered), so a short blip does not reshuffle the fleet.
//!
//! **Rotation.** From its home the agent moves round-robin, wrapping around. When a
//! session that was established is lost, the next round starts at once with the
//! candidate after the lost one (the lost one is tried last); after a round in which every
//! candidate failed, the agent backs off and the next round starts at its home again.
use std::net::SocketAddr;

/// Where the next round starts.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum Start {
    /// At the agent's home candidate.
    #[default]
    Home,
    /// Just after this address (whose session was lost), if it is still a candidate.
    After(SocketAddr),
}

/// The agent id's hash: FNV-1a (64 bits), then MurmurHash3's finaliser so ids that differ
/// in their last character only (`web-01`, `web-02`) differ in the low bits a modulo uses.
/// It must never change: a different hash would move every agent of a fleet at upgrade.
pub fn spread_hash(agent_id: &str) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in agent_id.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h ^= h >> 33;
    h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
    h ^= h >> 33;
    h = h.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    h ^ (h >> 33)
}

/// The index of the agent's home among `n` candidates (0 when there are none).
pub fn home_index(hash: u64, n: usize) -> usize {
    if n == 0 {
        0
    } else {
        (hash % n as u64) as usize
    }
}

/// The indices of one round's attempts over `candidates`: each once, from the home
/// (or from the one after `start`'s address, when it is still listed), wrapping around.
pub fn round(hash: u64, start: &Start, candidates: &[SocketAddr]) -> Vec<usize> {
    let n = candidates.len();
    let first = match start {
        Start::After(lost) => match candidates.iter().position(|c| c == lost) {
            Some(i) => (i + 1) % n,
            None => home_index(hash, n),
        },
        Start::Home => home_index(hash, n),
    };
    (0..n).map(|i| (first + i) % n).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addrs(n: u16) -> Vec<SocketAddr> {
        (0..n)
            .map(|i| SocketAddr::from(([10, 0, 0, 1 + i as u8], 7470)))
            .collect()
    }

    #[test]
    fn a_thousand_agents_spread_fairly_over_three_nodes() {
        let mut seen = [0usize; 3];
        for i in 0..1000 {
            seen[home_index(spread_hash(&format!("web-{i:03}")), 3)] += 1;
        }
        // A fair share is 333; a binomial spread puts 99.9 % of draws within ±50.
        for count in seen {
            assert!((283..=383).contains(&count), "{seen:?}");
        }
    }

    #[test]
    fn the_hash_is_stable() {
        // Pinned: a change would move agents between nodes at upgrade.
        assert_eq!(
            spread_hash(""),
            0xefd0_1f60_ba99_2926,
            "{:#x}",
            spread_hash("")
        );
        assert_eq!(spread_hash("web-001"), 0x74ee_d5d4_6c30_14e1);
        assert_eq!(spread_hash("web-001"), spread_hash("web-001"));
        assert_ne!(spread_hash("web-001"), spread_hash("web-002"));
    }

    #[test]
    fn a_round_starts_at_home_then_rotates_and_wraps() {
        let c = addrs(4);
        // Find agents whose home is each index, and check the rotation from there.
        for home in 0..4 {
            let hash = (0..)
                .map(|i| spread_hash(&format!("agent-{i}")))
                .find(|h| home_index(*h, 4) == home)
                .expect("some id");
            let want: Vec<usize> = (0..4).map(|i| (home + i) % 4).collect();
            assert_eq!(round(hash, &Start::Home, &c), want);
        }
        assert_eq!(home_index(7, 0), 0);
        assert!(round(7, &Start::Home, &[]).is_empty());
    }

    #[test]
    fn after_a_lost_session_the_next_candidate_comes_first_and_the_lost_one_last() {
        let c = addrs(3);
        let hash = 0; // home: index 0
        assert_eq!(round(hash, &Start::After(c[0]), &c), vec![1, 2, 0]);
        assert_eq!(round(hash, &Start::After(c[2]), &c), vec![0, 1, 2]);
        // A lost address that is no longer listed: from home again.
        let gone = SocketAddr::from(([192, 0, 2, 1], 7470));
        assert_eq!(round(5, &Start::After(gone), &c), vec![2, 0, 1]);
        // One candidate: always that one.
        assert_eq!(round(hash, &Start::After(c[0]), &c[..1]), vec![0]);
    }
}
