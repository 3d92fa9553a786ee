//! The flow screen's overview of its search: a chart of permitted, escaped and rejected
//! flows over the window (server-drawn SVG: no chart library to ship, nothing for the CSP
//! to allow), the busiest hosts and the most escaped ports, each a link that narrows the
//! search to it.
use maud::{Markup, html};

use super::layout::time;
use crate::store::{FlowSummary, VerdictCounts};

const WIDTH: f64 = 720.0;
const HEIGHT: f64 = 110.0;

/// The chart: one stacked column per bucket (bottom to top: permitted, rejected, escaped,
/// unchecked), each with its counts as a tooltip.
pub fn chart(s: &FlowSummary) -> Markup {
    let max = s
        .buckets
        .iter()
        .map(VerdictCounts::total)
        .max()
        .unwrap_or(0)
        .max(1);
    let n = s.buckets.len().max(1) as f64;
    let col = WIDTH / n;
    let scale = HEIGHT / max as f64;
    let end = s.start_ns + s.width_ns * s.buckets.len() as u64;
    let totals = s
        .buckets
        .iter()
        .fold(VerdictCounts::default(), |a, b| VerdictCounts {
            permitted: a.permitted + b.permitted,
            escaped: a.escaped + b.escaped,
            rejected: a.rejected + b.rejected,
            unchecked: a.unchecked + b.unchecked,
        });
    html! {
        figure.chart #flow-chart {
            svg viewBox={ "0 0 " (WIDTH) " " (HEIGHT + 2.0) } role="img"
                aria-label="Flows per interval by verdict" {
                @for (i, b) in s.buckets.iter().enumerate() {
                    @let x = i as f64 * col;
                    g {
                        title { (time(s.start_ns + s.width_ns * i as u64)) ": "
                            (b.permitted) " permitted, " (b.escaped) " escaped, " (b.rejected) " rejected"
                            @if b.unchecked > 0 { ", " (b.unchecked) " without policy" } }
                        // A transparent full-height column, so the tooltip is easy to hit.
                        rect.hit x=(x) y="0" width=(col) height=(HEIGHT) {}
                        @for (class, y, h) in stack(b, scale) {
                            rect class=(class) x={ (x + col * 0.1) } y=(y) width={ (col * 0.8) } height=(h) {}
                        }
                    }
                }
                line.axis x1="0" y1=(HEIGHT) x2=(WIDTH) y2=(HEIGHT) {}
            }
            figcaption {
                span.muted { (time(s.start_ns)) " – " (time(end)) ", per " (humantime::format_duration(std::time::Duration::from_secs(s.width_ns / 1_000_000_000))) ", peak " (max) " · " }
                span.key.permitted { (totals.permitted) " permitted" } " "
                span.key.escaped { (totals.escaped) " escaped" } " "
                span.key.rejected { (totals.rejected) " rejected" }
                @if totals.unchecked > 0 { " " span.key.unchecked { (totals.unchecked) " without policy" } }
            }
        }
    }
}

/// A column's boxes, bottom up: (class, top, height); every non-zero count at least a
/// pixel high.
fn stack(b: &VerdictCounts, scale: f64) -> Vec<(&'static str, f64, f64)> {
    let mut top = HEIGHT;
    let mut out = Vec::new();
    for (class, count) in [
        ("permitted", b.permitted),
        ("rejected", b.rejected),
        ("escaped", b.escaped),
        ("unchecked", b.unchecked),
    ] {
        if count > 0 {
            let h = (count as f64 * scale).max(1.0);
            top -= h;
            out.push((class, top, h));
        }
    }
    out
}

/// The busiest hosts and the most escaped ports; `narrow(key, value)` is the link that
/// adds the filter.
pub fn tops(s: &FlowSummary, narrow: impl Fn(&str, &str) -> String) -> Markup {
    html! {
        div.tops {
            table #top-hosts {
                thead { tr { th { "Top talkers" } th.num { "Flows" } } }
                tbody {
                    @for h in &s.top_hosts {
                        tr { td { a href=(narrow("host", &h.host)) { (h.host) } } td.num { (h.flows) } }
                    }
                    @if s.top_hosts.is_empty() { tr { td.muted colspan="2" { "no flows in the window" } } }
                }
            }
            table #top-escaped {
                thead { tr { th { "Most escaped ports" } th.num { "Escaped flows" } } }
                tbody {
                    @for (port, n) in &s.top_escaped_ports {
                        tr { td { a href=(narrow("port", &port.to_string())) { (port) } } td.num { (n) } }
                    }
                    @if s.top_escaped_ports.is_empty() { tr { td.muted colspan="2" { "no escaped flows in the window" } } }
                }
            }
        }
    }
}
