//! Refused packets per flow, for the nftables backend: dynamic sets with a counter per
//! element, filled by the input and output chains just before their final drop, read back
//! from `nft -j list table inet cordon` and turned into deltas.

use std::borrow::Cow;
use std::collections::{HashMap, HashSet};
use std::net::{IpAddr, SocketAddr};

use nftables::expr::{Expression, NamedExpression};
use nftables::schema::{NfListObject, Set, SetType, SetTypeValue};
use nftables::stmt::{Match, Operator, SetOp, Statement};
use nftables::types::NfFamily;
use serde_json::Value;

use super::ruleset::{meta_l4proto, payload};
use crate::NFT_TABLE;
use crate::refused::Refused;

/// Elements idle this long (seconds) leave the sets.
const ELEMENT_TIMEOUT_S: u32 = 120;
/// Flows each set tracks at once; beyond it packets are still dropped, only not counted
/// per flow (the chain's drop counter still counts them).
pub const SET_SIZE: u32 = 4096;

/// The sets: (chain, IPv6?, name).
pub const SETS: [(&str, bool, &str); 4] = [
    ("output", false, "refused_out4"),
    ("output", true, "refused_out6"),
    ("input", false, "refused_in4"),
    ("input", true, "refused_in6"),
];

/// The set declarations (their per-element counter is added by [`add_counters`]).
pub fn set_objects() -> Vec<NfListObject<'static>> {
    SETS.iter()
        .map(|(_, v6, name)| {
            let addr = if *v6 {
                SetType::Ipv6Addr
            } else {
                SetType::Ipv4Addr
            };
            NfListObject::Set(Box::new(Set {
                family: NfFamily::INet,
                table: Cow::Borrowed(NFT_TABLE),
                name: Cow::Borrowed(name),
                handle: None,
                set_type: SetTypeValue::Concatenated(Cow::Owned(vec![
                    addr,
                    addr,
                    SetType::InetProto,
                    SetType::InetService,
                    SetType::InetService,
                ])),
                policy: None,
                // Filled from the packet path (`update @set`); nft 1.0.6's JSON parser does
                // not know the `dynamic` flag, and a set updated by rules needs only this.
                flags: Some([nftables::schema::SetFlag::Timeout].into_iter().collect()),
                elem: None,
                timeout: Some(ELEMENT_TIMEOUT_S),
                gc_interval: None,
                size: Some(SET_SIZE),
                comment: Some(Cow::Borrowed("cordon refused flows")),
            }))
        })
        .collect()
}

/// The nftables crate's set type has no `stmt`; a counter per element is declared by
/// adding `"stmt": [{"counter": null}]` to each of our sets in the JSON transaction.
pub fn add_counters(payload: &mut Value) {
    let Some(objs) = payload.get_mut("nftables").and_then(Value::as_array_mut) else {
        return;
    };
    for o in objs {
        if let Some(set) = o.pointer_mut("/add/set").and_then(Value::as_object_mut)
            && SETS
                .iter()
                .any(|(_, _, n)| set.get("name") == Some(&Value::from(*n)))
        {
            set.insert("stmt".into(), serde_json::json!([{ "counter": null }]));
        }
    }
}

/// Rules (statements, comment) that record a refused packet in the chain's sets.
pub fn update_rules(chain: &str) -> Vec<(Vec<Statement<'static>>, String)> {
    let mut out = Vec::new();
    for (c, v6, name) in SETS {
        if c != chain {
            continue;
        }
        let ip = if v6 { "ip6" } else { "ip" };
        let (icmp, icmp_n) = if v6 { ("icmpv6", 58) } else { ("icmp", 1) };
        let update = |ports: [Expression<'static>; 2]| {
            let [sport, dport] = ports;
            Statement::Set(nftables::stmt::Set {
                op: SetOp::Update,
                elem: Expression::Named(NamedExpression::Concat(vec![
                    payload(ip, "saddr"),
                    payload(ip, "daddr"),
                    meta_l4proto(),
                    sport,
                    dport,
                ])),
                set: Cow::Owned(format!("@{name}")),
            })
        };
        let l4 = |protos: Expression<'static>| {
            Statement::Match(Match {
                left: meta_l4proto(),
                right: protos,
                op: Operator::IN,
            })
        };
        out.push((
            vec![
                l4(Expression::Named(NamedExpression::Set(vec![
                    nftables::expr::SetItem::Element(Expression::Number(6)),
                    nftables::expr::SetItem::Element(Expression::Number(17)),
                ]))),
                update([payload("th", "sport"), payload("th", "dport")]),
            ],
            format!("cordon count refused {ip} tcp/udp"),
        ));
        out.push((
            vec![
                l4(Expression::Number(icmp_n)),
                update([Expression::Number(0), Expression::Number(0)]),
            ],
            format!("cordon count refused {icmp}"),
        ));
    }
    out
}

/// One element of a refused set.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ElemKey {
    pub outbound: bool,
    pub proto: u8,
    pub saddr: IpAddr,
    pub daddr: IpAddr,
    pub sport: u16,
    pub dport: u16,
}

fn proto_number(v: &Value) -> Option<u8> {
    if let Some(n) = v.as_u64() {
        return u8::try_from(n).ok();
    }
    Some(match v.as_str()? {
        "tcp" => 6,
        "udp" => 17,
        "icmp" => 1,
        "ipv6-icmp" | "icmpv6" => 58,
        other => other.parse().ok()?,
    })
}

/// Elements and their counters (packets, bytes) out of a table listing.
pub fn elements(listing: &Value) -> Vec<(ElemKey, u64, u64)> {
    let mut out = Vec::new();
    let objs = listing
        .get("nftables")
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or(&[]);
    for set in objs.iter().filter_map(|o| o.get("set")) {
        let Some((chain, _, _)) = SETS.iter().find(|(_, _, n)| set["name"] == *n) else {
            continue;
        };
        for e in set["elem"].as_array().map(Vec::as_slice).unwrap_or(&[]) {
            let Some(e) = e.get("elem") else { continue };
            let Some(parts) = e.pointer("/val/concat").and_then(Value::as_array) else {
                continue;
            };
            let [sa, da, p, sp, dp] = parts.as_slice() else {
                continue;
            };
            let key = (|| {
                Some(ElemKey {
                    outbound: *chain == "output",
                    saddr: sa.as_str()?.parse().ok()?,
                    daddr: da.as_str()?.parse().ok()?,
                    proto: proto_number(p)?,
                    sport: u16::try_from(sp.as_u64()?).ok()?,
                    dport: u16::try_from(dp.as_u64()?).ok()?,
                })
            })();
            let Some(key) = key else { continue };
            let packets = e.pointer("/counter/packets").and_then(Value::as_u64);
            let bytes = e.pointer("/counter/bytes").and_then(Value::as_u64);
            out.push((key, packets.unwrap_or(0), bytes.unwrap_or(0)));
        }
    }
    out
}

/// Turns the sets' running counters into deltas since the previous reading.
#[derive(Debug, Clone, Default)]
pub struct Deltas {
    last: HashMap<ElemKey, (u64, u64)>,
}

impl Deltas {
    /// Forget everything (the sets were recreated, so their counters restart).
    pub fn reset(&mut self) {
        self.last.clear();
    }

    pub fn take(&mut self, listing: &Value) -> Vec<Refused> {
        let now = elements(listing);
        let present: HashSet<&ElemKey> = now.iter().map(|(k, _, _)| k).collect();
        self.last.retain(|k, _| present.contains(k));
        let mut out = Vec::new();
        for (k, packets, bytes) in &now {
            let (lp, lb) = self.last.get(k).copied().unwrap_or((0, 0));
            // A counter below the last reading belongs to a new element (timed out and
            // re-added): all of it is new.
            let (dp, db) = if *packets < lp {
                (*packets, *bytes)
            } else {
                (packets - lp, bytes.saturating_sub(lb))
            };
            self.last.insert(k.clone(), (*packets, *bytes));
            if dp == 0 {
                continue;
            }
            let (local, remote) = if k.outbound {
                ((k.saddr, k.sport), (k.daddr, k.dport))
            } else {
                ((k.daddr, k.dport), (k.saddr, k.sport))
            };
            out.push(Refused {
                proto: k.proto,
                local: SocketAddr::from(local),
                remote: SocketAddr::from(remote),
                outbound: k.outbound,
                packets: dp,
                bytes: db,
                attempts: 0,
                pid: None,
                comm: None,
            });
        }
        out
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // tests may panic
mod tests {
    use super::*;
    use serde_json::json;

    fn listing(out_packets: u64) -> Value {
        json!({"nftables": [
            {"metainfo": {"version": "1.0.6"}},
            {"set": {"family": "inet", "name": "refused_out4", "table": "cordon",
                "elem": [
                    {"elem": {"val": {"concat": ["10.9.9.1", "10.9.9.2", "tcp", 43250, 80]},
                              "expires": 119, "counter": {"packets": out_packets, "bytes": 60 * out_packets}}},
                    {"elem": {"val": {"concat": ["10.9.9.1", "10.9.9.2", "icmp", 0, 0]},
                              "counter": {"packets": 1, "bytes": 84}}}
                ]}},
            {"set": {"family": "inet", "name": "refused_in6", "table": "cordon",
                "elem": [{"elem": {"val": {"concat": ["fd00::2", "fd00::1", "udp", 5353, 9999]},
                                   "counter": {"packets": 3, "bytes": 300}}}]}},
            {"set": {"family": "inet", "name": "someone_elses", "table": "cordon",
                "elem": [{"elem": {"val": {"concat": ["1.1.1.1", "2.2.2.2", "tcp", 1, 2]},
                                   "counter": {"packets": 9, "bytes": 9}}}]}}
        ]})
    }

    #[test]
    fn elements_become_flows_from_this_hosts_side() {
        let mut d = Deltas::default();
        let mut r = d.take(&listing(2));
        r.sort_by_key(|x| (x.proto, x.outbound));
        assert_eq!(r.len(), 3, "{r:?}");
        let icmp = &r[0];
        assert_eq!((icmp.proto, icmp.packets), (1, 1));
        let tcp = &r[1];
        assert_eq!(tcp.local, "10.9.9.1:43250".parse().unwrap());
        assert_eq!(tcp.remote, "10.9.9.2:80".parse().unwrap());
        assert!(tcp.outbound);
        assert_eq!((tcp.packets, tcp.bytes), (2, 120));
        let udp = &r[2];
        assert!(!udp.outbound);
        assert_eq!(udp.local, "[fd00::1]:9999".parse().unwrap());
        assert_eq!(udp.remote, "[fd00::2]:5353".parse().unwrap());
    }

    #[test]
    fn only_increments_are_reported() {
        let mut d = Deltas::default();
        assert_eq!(d.take(&listing(2)).len(), 3);
        // Nothing new: nothing reported.
        assert!(d.take(&listing(2)).is_empty());
        // Two more SYNs on the TCP flow.
        let r = d.take(&listing(4));
        assert_eq!(r.len(), 1);
        assert_eq!((r[0].packets, r[0].bytes), (2, 120));
        // The element timed out and came back with a smaller count: all of it is new.
        let r = d.take(&listing(1));
        assert_eq!(r[0].packets, 1);
    }

    #[test]
    fn sets_get_a_counter_per_element() {
        let mut v = json!({"nftables": [
            {"add": {"set": {"name": "refused_out4"}}},
            {"add": {"set": {"name": "other"}}},
            {"add": {"rule": {"chain": "output"}}}
        ]});
        add_counters(&mut v);
        assert_eq!(
            v["nftables"][0]["add"]["set"]["stmt"],
            json!([{"counter": null}])
        );
        assert!(v["nftables"][1]["add"]["set"].get("stmt").is_none());
    }
}
