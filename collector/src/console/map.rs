//! The service map of a policy version: its groups as nodes (with how many enrolled hosts
//! each holds now) and its rules as edges from consumer to provider. The browser lays it
//! out (cytoscape.js with the dagre layered layout, vendored from the npm registry), so
//! a map of a hundred groups and more is drawn in layers, left to right, without overlaps,
//! and can be zoomed, panned and searched; clicking a group shows its rules.
use axum::{
    Json,
    extract::{Path, State},
    response::{IntoResponse, Response},
};
use maud::html;
use serde::Serialize;

use super::{
    assets,
    layout::{or_error, page},
    session::Session,
};
use crate::{
    api::{ApiError, ApiState},
    policy::{Action, compile::PortSpec, eval::host_passes, load, state::host_context},
};

#[derive(Serialize, Debug, PartialEq)]
pub struct Node {
    pub id: String,
    /// Enrolled hosts in the group now (by name and labels); `None` for a group without
    /// host filters (addresses or processes only, or `any`).
    pub members: Option<usize>,
    /// What the group is made of, for its tooltip.
    pub what: String,
}

#[derive(Serialize, Debug, PartialEq)]
pub struct Edge {
    pub id: String,
    pub source: String,
    pub target: String,
    pub ports: String,
    /// allow or deny.
    pub action: &'static str,
}

#[derive(Serialize, Debug, Default)]
pub struct Graph {
    pub nodes: Vec<Node>,
    pub edges: Vec<Edge>,
}

fn port_name(p: &PortSpec) -> String {
    let proto = |n: u8| match n {
        1 => "icmp".to_string(),
        6 => "tcp".to_string(),
        17 => "udp".to_string(),
        58 => "icmpv6".to_string(),
        n => format!("proto {n}"),
    };
    match *p {
        PortSpec::Any => "any".into(),
        PortSpec::Proto(n) => proto(n),
        PortSpec::Range(n, a, b) if a == b => format!("{}/{a}", proto(n)),
        PortSpec::Range(n, a, b) => format!("{}/{a}-{b}", proto(n)),
    }
}

/// The map of version `v`.
pub async fn graph(state: &ApiState, v: i64) -> Result<Graph, ApiError> {
    let (row, (hosts, _)) = state
        .store(move |st| Ok((st.policy(Some(v))?, host_context(&**st)?)))
        .await?;
    let row = row.ok_or_else(|| ApiError::not_found(format!("no policy version {v}")))?;
    let (_, p) = load(&row.body)
        .map_err(|e| ApiError::internal(format!("stored policy v{v} does not compile: {e}")))?;
    let used = |i: usize| p.rules.iter().any(|r| r.consumer == i || r.provider == i);
    let nodes = p
        .groups
        .iter()
        .enumerate()
        // `any` only where a rule names it.
        .filter(|(i, _)| *i != 0 || used(0))
        .map(|(_, g)| {
            let host_filtered = g.hostname.is_some() || !g.labels.is_empty();
            let mut what: Vec<String> = g.labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
            if g.hostname.is_some() {
                what.push("host names".into());
            }
            what.extend(g.cidr.iter().map(|c| c.to_string()));
            if g.process.is_some() {
                what.push("processes".into());
            }
            Node {
                id: g.name.clone(),
                members: host_filtered
                    .then(|| hosts.values().filter(|h| host_passes(g, h)).count()),
                what: what.join(", "),
            }
        })
        .collect();
    let edges = p
        .rules
        .iter()
        .map(|r| Edge {
            id: r.name.clone(),
            source: p.groups[r.consumer].name.clone(),
            target: p.groups[r.provider].name.clone(),
            ports: if r.ports.is_empty() {
                "any".into()
            } else {
                r.ports.iter().map(port_name).collect::<Vec<_>>().join(", ")
            },
            action: match r.action {
                Action::Allow => "allow",
                Action::Deny => "deny",
            },
        })
        .collect();
    Ok(Graph { nodes, edges })
}

/// `GET /console/policy/{v}/map.json`.
pub async fn json(State(state): State<ApiState>, _s: Session, Path(v): Path<i64>) -> Response {
    match graph(&state, v).await {
        Ok(g) => Json(g).into_response(),
        Err(e) => (e.status(), e.message().to_string()).into_response(),
    }
}

/// `GET /console/policy/{v}/map`.
pub async fn show(State(state): State<ApiState>, s: Session, Path(v): Path<i64>) -> Response {
    let r = async {
        let g = graph(&state, v).await?;
        Ok::<_, ApiError>(page(
            &s,
            &format!("Service map v{v}"),
            "policy",
            html! {
                h1 { "Service map of " a href={ "/console/policy/" (v) } { "v" (v) } }
                p.muted { (g.nodes.len()) " groups, " (g.edges.len()) " rules. Consumers on the left, providers to their right; red edges deny. Scroll to zoom, drag to pan, click a group for its rules." }
                form.filters #map-find {
                    label { "Find a group" input #map-query list="map-groups" size="24"; }
                    datalist #map-groups { @for n in &g.nodes { option value=(n.id) {} } }
                    button type="submit" { "Show" }
                    button type="button" #map-fit { "Fit" }
                }
                div.mapwrap {
                    div #map data-src={ "/console/policy/" (v) "/map.json" } {}
                    aside #map-info.panel { p.muted { "Click a group." } }
                }
                // cytoscape.js injects a <style> (which the CSP refuses) unless an element
                // with this id exists; console.css has that rule.
                span #__________cytoscape_stylesheet hidden {}
                script src=(assets::path("cytoscape.min.js")) {}
                script src=(assets::path("dagre.min.js")) {}
                script src=(assets::path("cytoscape-dagre.js")) {}
                script src=(assets::path("console-map.js")) {}
            },
        ))
    }
    .await;
    or_error(&s, r)
}
