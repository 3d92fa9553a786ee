//! The isolation ruleset, built as nftables JSON (pure: no `nft` is run here).
//!
//! Everything lives in the table `inet cordon`. Each base chain ends with a rule
//! `counter name "drop_<chain>" drop` whose comment records how many rules the chain must
//! have (`cordon:end rules=N`), so a later check can tell an intact ruleset from a flushed or
//! edited one without remembering anything in memory.

use std::borrow::Cow;
use std::net::{IpAddr, SocketAddr};

use ipnet::IpNet;
use nftables::batch::Batch;
use nftables::expr::{
    CT, Expression, Meta, MetaKey, NamedExpression, Payload, PayloadField, Prefix,
};
use nftables::schema::{Chain, Counter, NfListObject, Nftables, Rule, Table};
use nftables::stmt::{Match, Operator, Statement};
use nftables::types::{NfChainPolicy, NfChainType, NfFamily, NfHook};

use crate::NFT_TABLE;
use crate::model::{AllowRule, Exceptions, Proto};

/// Base-chain priority of the isolation chains.
///
/// `filter` is 0 and lower runs earlier. -150 (the `mangle` slot) runs before every usual
/// filter table (iptables-nft, firewalld, ufw, Docker all hook at 0 or later), but after
/// conntrack (-200), which the `ct state` matches on allow-list replies need, and before
/// `dstnat` (-100), so the output chain sees the address a program actually connected to.
pub const CHAIN_PRIORITY: i32 = -150;

/// The three base chains and their hooks.
pub const CHAINS: [(&str, NfHook); 3] = [
    ("input", NfHook::Input),
    ("output", NfHook::Output),
    ("forward", NfHook::Forward),
];

/// Prefix of the comment on each chain's final drop rule.
pub const END_COMMENT_PREFIX: &str = "cordon:end rules=";

/// Name of the drop counter of a chain.
pub fn drop_counter_name(chain: &str) -> String {
    format!("drop_{chain}")
}

#[derive(Clone, Copy)]
enum Dir {
    /// Packets coming in: match the remote end as the source.
    In,
    /// Packets going out: match the remote end as the destination.
    Out,
}

fn eq(left: Expression<'static>, right: Expression<'static>) -> Statement<'static> {
    Statement::Match(Match {
        left,
        right,
        op: Operator::EQ,
    })
}

pub(crate) fn payload(protocol: &'static str, field: &'static str) -> Expression<'static> {
    Expression::Named(NamedExpression::Payload(Payload::PayloadField(
        PayloadField {
            protocol: Cow::Borrowed(protocol),
            field: Cow::Borrowed(field),
        },
    )))
}

fn meta(key: MetaKey) -> Expression<'static> {
    Expression::Named(NamedExpression::Meta(Meta { key }))
}

pub(crate) fn meta_l4proto() -> Expression<'static> {
    meta(MetaKey::L4proto)
}

fn s(v: impl Into<String>) -> Expression<'static> {
    Expression::String(Cow::Owned(v.into()))
}

fn addr_match(net: &IpNet, dir: Dir) -> Statement<'static> {
    let proto = match net {
        IpNet::V4(_) => "ip",
        IpNet::V6(_) => "ip6",
    };
    let field = match dir {
        Dir::In => "saddr",
        Dir::Out => "daddr",
    };
    let right = if net.prefix_len() == net.max_prefix_len() {
        s(net.addr().to_string())
    } else {
        Expression::Named(NamedExpression::Prefix(Prefix {
            addr: Box::new(s(net.network().to_string())),
            len: u32::from(net.prefix_len()),
        }))
    };
    eq(payload(proto, field), right)
}

fn l4proto(proto: Proto, v6: bool) -> Statement<'static> {
    let n = match (proto, v6) {
        (Proto::Tcp, _) => 6,
        (Proto::Udp, _) => 17,
        (Proto::Icmp, false) => 1,
        (Proto::Icmp, true) => 58,
    };
    eq(meta(MetaKey::L4proto), Expression::Number(n))
}

fn port_match(proto: Proto, dir: Dir, port: u16) -> Statement<'static> {
    let p = if proto == Proto::Udp { "udp" } else { "tcp" };
    // Outgoing packets go *to* the port; replies come back *from* it.
    let f = match dir {
        Dir::In => "sport",
        Dir::Out => "dport",
    };
    eq(payload(p, f), Expression::Number(u32::from(port)))
}

fn ct_established_related() -> Statement<'static> {
    Statement::Match(Match {
        left: Expression::Named(NamedExpression::CT(CT {
            key: Cow::Borrowed("state"),
            family: None,
            dir: None,
        })),
        right: Expression::List(vec![s("established"), s("related")]),
        op: Operator::IN,
    })
}

fn accept() -> Statement<'static> {
    Statement::Accept(None)
}

/// Statements (without table/chain) of one chain, each with its comment.
type ChainRules = Vec<(Vec<Statement<'static>>, String)>;

fn management_rules(mgmt: &[SocketAddr], dir: Dir) -> ChainRules {
    mgmt.iter()
        .map(|sa| {
            let ip = sa.ip().to_canonical();
            let net = IpNet::from(ip);
            let exprs = vec![
                addr_match(&net, dir),
                l4proto(Proto::Udp, ip.is_ipv6()),
                port_match(Proto::Udp, dir, sa.port()),
                accept(),
            ];
            (
                exprs,
                format!("cordon management {}", SocketAddr::new(ip, sa.port())),
            )
        })
        .collect()
}

fn allow_rules(allow: &[AllowRule], dir: Dir) -> ChainRules {
    allow
        .iter()
        .map(|r| {
            let v6 = matches!(r.net, IpNet::V6(_));
            let mut exprs = vec![addr_match(&r.net, dir)];
            if let Some(proto) = r.proto {
                exprs.push(l4proto(proto, v6));
                if let Some(port) = r.port {
                    exprs.push(port_match(proto, dir, port));
                    if matches!(dir, Dir::In) {
                        // Only replies to connections we opened to that port, not new
                        // connections that merely come from it.
                        exprs.push(ct_established_related());
                    }
                }
            }
            exprs.push(accept());
            (exprs, format!("cordon allow {r}"))
        })
        .collect()
}

/// IPv6 neighbour discovery (solicit/advert, link-local only: hop limit 255): without it no
/// IPv6 management or allow-list address on the same link is reachable. IPv4's ARP is not
/// filtered by `inet` tables.
fn neighbour_discovery() -> ChainRules {
    ["nd-neighbor-solicit", "nd-neighbor-advert"]
        .into_iter()
        .map(|t| {
            let exprs = vec![
                l4proto(Proto::Icmp, true),
                eq(payload("icmpv6", "type"), s(t)),
                eq(payload("ip6", "hoplimit"), Expression::Number(255)),
                accept(),
            ];
            (exprs, format!("cordon ipv6 {t}"))
        })
        .collect()
}

fn chain_rules(chain: &str, exc: &Exceptions) -> ChainRules {
    let (lo_key, dir) = match chain {
        "input" => (MetaKey::Iif, Dir::In),
        "output" => (MetaKey::Oif, Dir::Out),
        _ => return Vec::new(), // forward: nothing is routed through an isolated host
    };
    let mut rules: ChainRules = vec![(
        vec![eq(meta(lo_key), s("lo")), accept()],
        "cordon loopback".to_string(),
    )];
    rules.extend(management_rules(&exc.management, dir));
    rules.extend(allow_rules(&exc.allow, dir));
    if exc
        .management
        .iter()
        .map(|m| m.ip().to_canonical())
        .chain(exc.allow.iter().map(|a| a.net.addr()))
        .any(|ip: IpAddr| ip.is_ipv6())
    {
        rules.extend(neighbour_discovery());
    }
    // Last before the drop: count what is about to be refused, per flow.
    rules.extend(super::refused::update_rules(chain));
    rules
}

fn table() -> Table<'static> {
    Table {
        family: NfFamily::INet,
        name: Cow::Borrowed(NFT_TABLE),
        handle: None,
    }
}

/// The transaction that removes `inet cordon` if it exists: `add` (a no-op when present)
/// then `delete`, so it never fails on an absent table and touches nothing else.
pub fn clear_ruleset() -> Nftables<'static> {
    let mut b = Batch::new();
    b.add(NfListObject::Table(table()));
    b.delete(NfListObject::Table(table()));
    b.to_nftables()
}

/// The one transaction that (re)creates `inet cordon` with the isolation ruleset.
pub fn isolation_ruleset(exc: &Exceptions) -> Nftables<'static> {
    let mut b = Batch::new();
    // Replace atomically: whatever our table held before goes in the same transaction.
    b.add(NfListObject::Table(table()));
    b.delete(NfListObject::Table(table()));
    b.add(NfListObject::Table(table()));
    for set in super::refused::set_objects() {
        b.add(set);
    }
    for (name, hook) in CHAINS {
        b.add(NfListObject::Counter(Counter {
            family: NfFamily::INet,
            table: Cow::Borrowed(NFT_TABLE),
            name: Cow::Owned(drop_counter_name(name)),
            handle: None,
            packets: None,
            bytes: None,
        }));
        b.add(NfListObject::Chain(Chain {
            family: NfFamily::INet,
            table: Cow::Borrowed(NFT_TABLE),
            name: Cow::Borrowed(name),
            newname: None,
            handle: None,
            _type: Some(NfChainType::Filter),
            hook: Some(hook),
            prio: Some(CHAIN_PRIORITY),
            dev: None,
            policy: Some(NfChainPolicy::Drop),
        }));
        let mut rules = chain_rules(name, exc);
        let total = rules.len() + 1;
        rules.push((
            vec![
                Statement::Counter(nftables::stmt::Counter::Named(Cow::Owned(
                    drop_counter_name(name),
                ))),
                Statement::Drop(None),
            ],
            format!("{END_COMMENT_PREFIX}{total}"),
        ));
        for (expr, comment) in rules {
            b.add(NfListObject::Rule(Rule {
                family: NfFamily::INet,
                table: Cow::Borrowed(NFT_TABLE),
                chain: Cow::Borrowed(name),
                expr: Cow::Owned(expr),
                handle: None,
                index: None,
                comment: Some(Cow::Owned(comment)),
            }));
        }
    }
    b.to_nftables()
}

/// [`isolation_ruleset`] as the JSON fed to `nft`, with the refused-flow sets' counters.
pub fn isolation_payload(exc: &Exceptions) -> Result<serde_json::Value, serde_json::Error> {
    let mut v = serde_json::to_value(isolation_ruleset(exc))?;
    super::refused::add_counters(&mut v);
    Ok(v)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // tests may panic
mod tests {
    use super::*;
    use serde_json::Value;

    fn exc(mgmt: &[&str], allow: &[&str]) -> Exceptions {
        Exceptions {
            management: mgmt.iter().map(|m| m.parse().unwrap()).collect(),
            allow: allow.iter().map(|a| a.parse().unwrap()).collect(),
        }
    }

    fn json(n: &Nftables) -> Value {
        serde_json::to_value(n).unwrap()
    }

    fn objects(v: &Value) -> Vec<Value> {
        v["nftables"].as_array().unwrap().clone()
    }

    fn rules_of<'v>(objs: &'v [Value], chain: &str) -> Vec<&'v Value> {
        objs.iter()
            .filter_map(|o| o.get("add").and_then(|a| a.get("rule")))
            .filter(|r| r["chain"] == chain)
            .collect()
    }

    #[test]
    fn only_touches_inet_cordon_and_never_flushes() {
        let v = json(&isolation_ruleset(&exc(
            &["10.0.0.1:4433"],
            &["10.0.0.9:22/tcp"],
        )));
        let text = v.to_string();
        assert!(!text.contains("flush"), "{text}");
        assert!(!text.contains("ruleset"), "{text}");
        for o in objects(&v) {
            let (cmd, inner) = o.as_object().unwrap().iter().next().unwrap();
            assert!(cmd == "add" || cmd == "delete", "{cmd}");
            let (_, obj) = inner.as_object().unwrap().iter().next().unwrap();
            assert_eq!(obj["family"], "inet", "{obj}");
            let t = obj.get("table").unwrap_or(&obj["name"]);
            assert_eq!(t, NFT_TABLE, "{obj}");
        }
        // Replacement order: add, delete, add table.
        let o = objects(&v);
        assert!(o[0]["add"]["table"].is_object());
        assert!(o[1]["delete"]["table"].is_object());
        assert!(o[2]["add"]["table"].is_object());
    }

    #[test]
    fn chains_drop_by_policy_at_our_priority() {
        let v = json(&isolation_ruleset(&exc(&["10.0.0.1:4433"], &[])));
        let chains: Vec<Value> = objects(&v)
            .into_iter()
            .filter_map(|o| o["add"].get("chain").cloned())
            .collect();
        assert_eq!(chains.len(), 3);
        for c in chains {
            assert_eq!(c["policy"], "drop");
            assert_eq!(c["type"], "filter");
            assert_eq!(c["prio"], CHAIN_PRIORITY);
        }
    }

    #[test]
    fn management_present_even_with_empty_allow_list() {
        let v = json(&isolation_ruleset(&exc(
            &["10.0.0.1:4433", "[2001:db8::7]:443"],
            &[],
        )));
        let o = objects(&v);
        let out = rules_of(&o, "output");
        let inp = rules_of(&o, "input");
        let m_out = out
            .iter()
            .find(|r| r["comment"] == "cordon management 10.0.0.1:4433");
        let m_out = m_out.expect("management output rule").to_string();
        assert!(m_out.contains(r#""field":"daddr""#) && m_out.contains(r#""field":"dport""#));
        assert!(m_out.contains("4433") && m_out.contains("\"accept\""));
        let m_in = inp
            .iter()
            .find(|r| r["comment"] == "cordon management 10.0.0.1:4433");
        let m_in = m_in.expect("management input rule").to_string();
        assert!(m_in.contains(r#""field":"saddr""#) && m_in.contains(r#""field":"sport""#));
        assert!(
            !m_in.contains("\"ct\""),
            "management must not depend on conntrack"
        );
        let v6 = out
            .iter()
            .any(|r| r["comment"] == "cordon management [2001:db8::7]:443");
        assert!(v6);
        // IPv6 management needs neighbour discovery.
        assert!(
            inp.iter()
                .any(|r| r["comment"] == "cordon ipv6 nd-neighbor-solicit")
        );
    }

    #[test]
    fn no_blanket_established_rule() {
        let v = json(&isolation_ruleset(&exc(
            &["10.0.0.1:4433"],
            &["10.0.0.9:22/tcp", "192.0.2.0/24", "10.0.0.1/icmp"],
        )));
        let o = objects(&v);
        for chain in ["input", "output", "forward"] {
            for r in rules_of(&o, chain) {
                let t = r.to_string();
                if t.contains("\"ct\"") {
                    // conntrack only narrows an allow-list match, never stands alone.
                    assert!(
                        r["comment"].as_str().unwrap().starts_with("cordon allow "),
                        "{t}"
                    );
                    assert!(t.contains("saddr"), "{t}");
                }
            }
        }
        let inp = rules_of(&o, "input");
        let ssh = inp
            .iter()
            .find(|r| r["comment"] == "cordon allow 10.0.0.9:22/tcp")
            .unwrap()
            .to_string();
        assert!(ssh.contains("established") && ssh.contains("sport"));
        let net = inp
            .iter()
            .find(|r| r["comment"] == "cordon allow 192.0.2.0/24")
            .unwrap()
            .to_string();
        assert!(net.contains(r#""len":24"#), "{net}");
        assert!(
            inp.iter()
                .all(|r| r["comment"] != "cordon ipv6 nd-neighbor-solicit")
        );
    }

    #[test]
    fn forward_only_drops_and_every_chain_ends_with_a_counted_drop() {
        let e = exc(&["10.0.0.1:4433"], &["10.0.0.9:22/tcp"]);
        let v = json(&isolation_ruleset(&e));
        let o = objects(&v);
        let fwd = rules_of(&o, "forward");
        assert_eq!(fwd.len(), 1);
        for chain in ["input", "output", "forward"] {
            let rules = rules_of(&o, chain);
            let last = rules.last().unwrap();
            let c = last["comment"].as_str().unwrap();
            assert_eq!(c, format!("{END_COMMENT_PREFIX}{}", rules.len()));
            let t = last.to_string();
            assert!(t.contains(&format!(r#""counter":"drop_{chain}""#)), "{t}");
            assert!(t.contains("\"drop\""));
        }
        // loopback + management + allow + 4 refused-flow counters + end
        assert_eq!(rules_of(&o, "input").len(), 8);
        let counting: Vec<_> = rules_of(&o, "output")
            .into_iter()
            .filter(|r| {
                r["comment"]
                    .as_str()
                    .unwrap()
                    .starts_with("cordon count refused")
            })
            .collect();
        assert_eq!(counting.len(), 4);
        assert!(counting[0].to_string().contains(r#""set":"@refused_out4""#));
    }

    #[test]
    fn clear_deletes_only_our_table() {
        let v = json(&clear_ruleset());
        let o = objects(&v);
        assert_eq!(o.len(), 2);
        assert_eq!(o[1]["delete"]["table"]["name"], NFT_TABLE);
        assert_eq!(o[1]["delete"]["table"]["family"], "inet");
    }
}
