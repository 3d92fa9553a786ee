//! Playbooks: YAML files in the collector's playbook directory (see `docs/playbooks.md`).
//! A trigger chooses the alerts; steps say what to do, in order, with branches on an
//! approval's outcome. A file that does not validate is refused at load with the file,
//! the line and the reason.
use std::{collections::BTreeMap, path::Path, time::Duration};

use serde::Deserialize;
use serde_saphyr::Spanned;

use crate::policy::document::{PolicyError, Severity};

/// Where a step goes when none is named: the next one in the file.
pub const END: &str = "end";

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PlaybookDoc {
    pub name: Spanned<String>,
    #[serde(default)]
    pub description: String,
    pub trigger: Spanned<TriggerDef>,
    pub steps: Vec<Spanned<StepDef>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TriggerDef {
    /// Alert type; default COMPLIANCE.
    #[serde(rename = "type")]
    pub kind: Option<Spanned<String>>,
    /// Lowest severity that starts a run; default LOW (all).
    pub severity_at_least: Option<Spanned<String>>,
    /// Host name patterns (`web-*`); default all hosts.
    #[serde(default)]
    pub hosts: Vec<Spanned<String>>,
    /// Host labels that must all match.
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// Policy rule names; default any rule.
    #[serde(default)]
    pub rules: Vec<Spanned<String>>,
    /// Verdicts that start a run: `escaped`, `rejected`; default `escaped` only (traffic
    /// that got through; a host already isolated raises `rejected` alerts).
    #[serde(default)]
    pub verdicts: Vec<Spanned<String>>,
    /// `outbound` (the host opened the flow: the consumer's alert), `inbound`, or `any`
    /// (default). A violation raises an alert on both hosts that saw it.
    pub direction: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StepDef {
    pub id: Spanned<String>,
    /// The step after this one (an id, or `end`); default the next in the file.
    pub next: Option<Spanned<String>>,
    pub notify: Option<Spanned<NotifyDef>>,
    pub approve: Option<Spanned<ApproveDef>>,
    pub isolate: Option<Spanned<IsolateDef>>,
    pub release: Option<Spanned<ReleaseDef>>,
    pub ticket: Option<Spanned<TicketDef>>,
    pub soar: Option<Spanned<SoarDef>>,
    /// Pause, e.g. `10m`.
    pub wait: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NotifyDef {
    /// `outputs` (Kafka and HEC, through the alert outbox), `webhook` or `email`.
    pub channel: Spanned<String>,
    #[serde(default)]
    pub subject: Option<String>,
    pub message: Spanned<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApproveDef {
    /// `duo` (push to `user`), `link` (a one-time link sent by `send_link_to`), `console`
    /// (`cordon approve` / the API).
    pub via: Spanned<String>,
    pub user: Option<Spanned<String>>,
    /// For `link`: `email` or `webhook`.
    pub send_link_to: Option<Spanned<String>>,
    /// How long to wait for an answer, e.g. `5m`.
    pub timeout: Spanned<String>,
    /// What a timeout counts as: `approve` or `deny`.
    pub default: Spanned<String>,
    /// Where to go when approved (default: the next step) and when denied (default: end).
    pub on_approve: Option<Spanned<String>>,
    pub on_deny: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IsolateDef {
    pub reason: Spanned<String>,
    /// Lifts by itself after this long, e.g. `2h`.
    #[serde(rename = "for")]
    pub duration: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReleaseDef {
    pub reason: Spanned<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TicketDef {
    /// `create`, `note` or `resolve`.
    pub action: Spanned<String>,
    #[serde(default)]
    pub short_description: Option<Spanned<String>>,
    #[serde(default)]
    pub text: Option<Spanned<String>>,
    /// 1 (high) to 3 (low).
    #[serde(default)]
    pub urgency: Option<u8>,
    #[serde(default)]
    pub impact: Option<u8>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SoarDef {
    /// Container label; default the SOAR config's.
    #[serde(default)]
    pub label: Option<String>,
}

/// What the collector has configured, so a playbook using an absent integration is refused.
#[derive(Clone, Copy, Debug, Default)]
pub struct Available {
    pub duo: bool,
    pub servicenow: bool,
    pub soar: bool,
    pub webhook: bool,
    pub email: bool,
    pub link: bool,
}

/// A checked playbook, ready to run.
#[derive(Clone, Debug)]
pub struct Playbook {
    pub name: String,
    pub trigger: Trigger,
    pub steps: Vec<Step>,
}

#[derive(Clone, Debug)]
pub struct Trigger {
    pub kind: String,
    pub severity_at_least: Severity,
    pub hosts: Option<globset::GlobSet>,
    pub host_patterns: Vec<String>,
    pub labels: BTreeMap<String, String>,
    pub rules: Vec<String>,
    pub verdicts: Vec<String>,
    /// `None`: either direction.
    pub direction: Option<String>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Step {
    pub id: String,
    pub next: String,
    pub action: Action,
}

#[derive(Clone, Debug, PartialEq)]
pub enum Action {
    Notify {
        channel: Channel,
        subject: String,
        message: String,
    },
    Approve {
        via: Via,
        user: String,
        send_link_to: Option<Channel>,
        timeout: Duration,
        default_approve: bool,
        on_approve: String,
        on_deny: String,
    },
    Isolate {
        reason: String,
        duration: Option<Duration>,
    },
    Release {
        reason: String,
    },
    Ticket {
        op: TicketOp,
    },
    Soar {
        label: Option<String>,
    },
    Wait(Duration),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Channel {
    Outputs,
    Webhook,
    Email,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Via {
    Duo,
    Link,
    Console,
}

impl Via {
    pub fn as_str(self) -> &'static str {
        match self {
            Via::Duo => "duo",
            Via::Link => "link",
            Via::Console => "console",
        }
    }
}

#[derive(Clone, Debug, PartialEq)]
pub enum TicketOp {
    Create {
        short_description: String,
        urgency: u8,
        impact: u8,
    },
    Note(String),
    Resolve(String),
}

/// Placeholders a message may use (`{host}`); anything else is refused at load.
pub const PLACEHOLDERS: [&str; 14] = [
    "playbook",
    "run",
    "host",
    "severity",
    "alert_text",
    "key_id",
    "rule",
    "remote",
    "exe",
    "outcome",
    "decided_by",
    "incident",
    "approval_link",
    "count",
];

/// An error in a playbook file: the file, then the line and reason.
#[derive(Debug, thiserror::Error)]
#[error("{file}: {error}")]
pub struct PlaybookError {
    pub file: String,
    pub error: PolicyError,
}

fn at<T>(v: &Spanned<T>, field: impl Into<String>, msg: impl Into<String>) -> PolicyError {
    PolicyError::at(v, field, msg)
}

fn duration(v: &Spanned<String>, field: &str) -> Result<Duration, PolicyError> {
    let d = humantime::parse_duration(&v.value)
        .map_err(|e| at(v, field, format!("`{}`: {e} (e.g. 30s, 5m, 2h)", v.value)))?;
    if d.is_zero() {
        return Err(at(v, field, "must be more than 0"));
    }
    Ok(d)
}

fn template(v: &Spanned<String>, field: &str) -> Result<String, PolicyError> {
    let mut rest = v.value.as_str();
    while let Some(i) = rest.find('{') {
        let Some(j) = rest[i..].find('}') else {
            return Err(at(v, field, "unclosed `{` in the message"));
        };
        let name = &rest[i + 1..i + j];
        if !PLACEHOLDERS.contains(&name) {
            return Err(at(
                v,
                field,
                format!(
                    "unknown placeholder `{{{name}}}` (known: {})",
                    PLACEHOLDERS.join(", ")
                ),
            ));
        }
        rest = &rest[i + j + 1..];
    }
    Ok(v.value.clone())
}

fn channel(v: &Spanned<String>, field: &str, avail: &Available) -> Result<Channel, PolicyError> {
    let c = match v.value.as_str() {
        "outputs" => Channel::Outputs,
        "webhook" if avail.webhook => Channel::Webhook,
        "email" if avail.email => Channel::Email,
        "webhook" | "email" => {
            return Err(at(
                v,
                field,
                format!(
                    "`{}` is not configured in the collector ([response.{}])",
                    v.value, v.value
                ),
            ));
        }
        other => {
            return Err(at(
                v,
                field,
                format!("`{other}`: outputs, webhook or email"),
            ));
        }
    };
    Ok(c)
}

/// Parses and checks one playbook.
pub fn parse(text: &str, avail: &Available) -> Result<Playbook, PolicyError> {
    let doc: PlaybookDoc =
        serde_saphyr::from_str(text).map_err(crate::policy::document::yaml_error)?;
    check(doc, avail)
}

fn check(doc: PlaybookDoc, avail: &Available) -> Result<Playbook, PolicyError> {
    let name = doc.name.value.trim().to_string();
    if name.is_empty() || name.len() > 64 {
        return Err(at(&doc.name, "name", "1 to 64 characters"));
    }
    let trigger = check_trigger(&doc.trigger)?;
    if doc.steps.is_empty() {
        return Err(at(
            &doc.trigger,
            "steps",
            "a playbook needs at least one step",
        ));
    }
    let ids: Vec<&str> = doc
        .steps
        .iter()
        .map(|s| s.value.id.value.as_str())
        .collect();
    let mut steps = Vec::new();
    for (i, s) in doc.steps.iter().enumerate() {
        let f = |x: &str| format!("steps[{i}].{x}");
        let id = &s.value.id;
        if id.value.is_empty() || id.value == END || ids[..i].contains(&id.value.as_str()) {
            return Err(at(
                id,
                f("id"),
                format!("`{}`: ids must be unique and not `end`", id.value),
            ));
        }
        let default_next = ids.get(i + 1).copied().unwrap_or(END).to_string();
        let target = |v: &Option<Spanned<String>>, field: &str, dflt: &str| match v {
            None => Ok(dflt.to_string()),
            Some(t) if t.value == END || ids.contains(&t.value.as_str()) => Ok(t.value.clone()),
            Some(t) => Err(at(t, f(field), format!("no step `{}`", t.value))),
        };
        let next = target(&s.value.next, "next", &default_next)?;
        let action = action(&s.value, i, avail, &default_next, &target)?;
        steps.push(Step {
            id: id.value.clone(),
            next,
            action,
        });
    }
    no_cycles(&steps).map_err(|id| {
        let s = doc.steps.iter().find(|s| s.value.id.value == id);
        match s {
            Some(s) => at(
                &s.value.id,
                "steps",
                format!("step `{id}` can be reached again from itself: playbooks may not loop"),
            ),
            None => at(&doc.name, "steps", "a loop"),
        }
    })?;
    Ok(Playbook {
        name,
        trigger,
        steps,
    })
}

type Target<'a> = dyn Fn(&Option<Spanned<String>>, &str, &str) -> Result<String, PolicyError> + 'a;

fn action(
    s: &StepDef,
    i: usize,
    avail: &Available,
    default_next: &str,
    target: &Target<'_>,
) -> Result<Action, PolicyError> {
    let f = |x: &str| format!("steps[{i}].{x}");
    let count = [
        s.notify.is_some(),
        s.approve.is_some(),
        s.isolate.is_some(),
        s.release.is_some(),
        s.ticket.is_some(),
        s.soar.is_some(),
        s.wait.is_some(),
    ]
    .iter()
    .filter(|b| **b)
    .count();
    if count != 1 {
        return Err(at(
            &s.id,
            f("id"),
            "each step has exactly one of notify, approve, isolate, release, ticket, soar, wait",
        ));
    }
    if let Some(n) = &s.notify {
        let n = &n.value;
        return Ok(Action::Notify {
            channel: channel(&n.channel, &f("notify.channel"), avail)?,
            subject: n
                .subject
                .clone()
                .unwrap_or_else(|| "Cordon: {alert_text}".into()),
            message: template(&n.message, &f("notify.message"))?,
        });
    }
    if let Some(a) = &s.approve {
        let a = &a.value;
        let via = match a.via.value.as_str() {
            "duo" if avail.duo => Via::Duo,
            "duo" => {
                return Err(at(
                    &a.via,
                    f("approve.via"),
                    "`duo` is not configured in the collector ([response.duo])",
                ));
            }
            "link" if avail.link => Via::Link,
            "link" => {
                return Err(at(
                    &a.via,
                    f("approve.via"),
                    "`link` needs response.public_url in the collector config",
                ));
            }
            "console" => Via::Console,
            other => {
                return Err(at(
                    &a.via,
                    f("approve.via"),
                    format!("`{other}`: duo, link or console"),
                ));
            }
        };
        let user = match (&a.user, via) {
            (Some(u), _) if !u.value.trim().is_empty() => u.value.clone(),
            (_, Via::Duo) => {
                return Err(at(
                    &a.via,
                    f("approve.user"),
                    "approval via duo needs the Duo user to push to",
                ));
            }
            _ => String::new(),
        };
        let send_link_to = match (&a.send_link_to, via) {
            (Some(c), Via::Link) => Some(channel(c, &f("approve.send_link_to"), avail)?),
            (None, Via::Link) => {
                return Err(at(
                    &a.via,
                    f("approve.send_link_to"),
                    "approval via link needs `send_link_to: email` or `webhook`",
                ));
            }
            _ => None,
        };
        let default_approve = match a.default.value.as_str() {
            "approve" => true,
            "deny" => false,
            other => {
                return Err(at(
                    &a.default,
                    f("approve.default"),
                    format!("`{other}`: approve or deny"),
                ));
            }
        };
        return Ok(Action::Approve {
            via,
            user,
            send_link_to,
            timeout: duration(&a.timeout, &f("approve.timeout"))?,
            default_approve,
            on_approve: target(&a.on_approve, "approve.on_approve", default_next)?,
            on_deny: target(&a.on_deny, "approve.on_deny", END)?,
        });
    }
    if let Some(iso) = &s.isolate {
        let iso = &iso.value;
        return Ok(Action::Isolate {
            reason: template(&iso.reason, &f("isolate.reason"))?,
            duration: iso
                .duration
                .as_ref()
                .map(|d| duration(d, &f("isolate.for")))
                .transpose()?,
        });
    }
    if let Some(r) = &s.release {
        return Ok(Action::Release {
            reason: template(&r.value.reason, &f("release.reason"))?,
        });
    }
    if let Some(t) = &s.ticket {
        if !avail.servicenow {
            return Err(at(
                t,
                f("ticket"),
                "ServiceNow is not configured in the collector ([response.servicenow])",
            ));
        }
        let t = &t.value;
        let text = |field: &str| match &t.text {
            Some(x) => template(x, &f(field)),
            None => Err(at(&t.action, f(field), "this ticket action needs `text`")),
        };
        let op = match t.action.value.as_str() {
            "create" => TicketOp::Create {
                short_description: match &t.short_description {
                    Some(x) => template(x, &f("ticket.short_description"))?,
                    None => "Cordon: {alert_text}".into(),
                },
                urgency: check_level(t.urgency, &t.action, &f("ticket.urgency"))?,
                impact: check_level(t.impact, &t.action, &f("ticket.impact"))?,
            },
            "note" => TicketOp::Note(text("ticket.text")?),
            "resolve" => TicketOp::Resolve(text("ticket.text")?),
            other => {
                return Err(at(
                    &t.action,
                    f("ticket.action"),
                    format!("`{other}`: create, note or resolve"),
                ));
            }
        };
        return Ok(Action::Ticket { op });
    }
    if let Some(so) = &s.soar {
        if !avail.soar {
            return Err(at(
                so,
                f("soar"),
                "Splunk SOAR is not configured in the collector ([response.soar])",
            ));
        }
        return Ok(Action::Soar {
            label: so.value.label.clone(),
        });
    }
    match &s.wait {
        Some(w) => Ok(Action::Wait(duration(w, &f("wait"))?)),
        None => Err(at(&s.id, f("id"), "empty step")),
    }
}

fn check_level(v: Option<u8>, near: &Spanned<String>, field: &str) -> Result<u8, PolicyError> {
    match v {
        None => Ok(2),
        Some(n @ 1..=3) => Ok(n),
        Some(n) => Err(at(near, field, format!("{n}: 1 (high) to 3 (low)"))),
    }
}

fn check_trigger(t: &Spanned<TriggerDef>) -> Result<Trigger, PolicyError> {
    let v = &t.value;
    let kind = v
        .kind
        .as_ref()
        .map_or("COMPLIANCE".to_string(), |k| k.value.to_ascii_uppercase());
    let severity_at_least = match &v.severity_at_least {
        None => Severity::Low,
        Some(s) => Severity::parse(&s.value).ok_or_else(|| {
            at(
                s,
                "trigger.severity_at_least",
                format!(
                    "`{}`: LOW, MEDIUM, HIGH, CRITICAL or IMMEDIATE_ACTION",
                    s.value
                ),
            )
        })?,
    };
    let mut hosts = None;
    if !v.hosts.is_empty() {
        let mut b = globset::GlobSetBuilder::new();
        for h in &v.hosts {
            let g = globset::Glob::new(&h.value)
                .map_err(|e| at(h, "trigger.hosts", format!("`{}`: {e}", h.value)))?;
            b.add(g);
        }
        hosts = Some(
            b.build()
                .map_err(|e| at(t, "trigger.hosts", e.to_string()))?,
        );
    }
    let mut verdicts = Vec::new();
    for x in &v.verdicts {
        if !matches!(x.value.as_str(), "escaped" | "rejected") {
            return Err(at(
                x,
                "trigger.verdicts",
                format!("`{}`: escaped or rejected", x.value),
            ));
        }
        verdicts.push(x.value.clone());
    }
    if verdicts.is_empty() {
        verdicts.push("escaped".into());
    }
    let direction = match &v.direction {
        None => None,
        Some(d) if d.value == "any" => None,
        Some(d) if matches!(d.value.as_str(), "outbound" | "inbound") => Some(d.value.clone()),
        Some(d) => {
            return Err(at(
                d,
                "trigger.direction",
                format!("`{}`: outbound, inbound or any", d.value),
            ));
        }
    };
    Ok(Trigger {
        direction,
        kind,
        severity_at_least,
        hosts,
        host_patterns: v.hosts.iter().map(|h| h.value.clone()).collect(),
        labels: v.labels.clone(),
        rules: v.rules.iter().map(|r| r.value.clone()).collect(),
        verdicts,
    })
}

/// The id of a step that can reach itself, if any (steps form a graph through `next` and
/// an approval's branches).
fn no_cycles(steps: &[Step]) -> Result<(), String> {
    fn succ(s: &Step) -> Vec<&str> {
        let mut v = vec![s.next.as_str()];
        if let Action::Approve {
            on_approve,
            on_deny,
            ..
        } = &s.action
        {
            v = vec![on_approve.as_str(), on_deny.as_str()];
        }
        v
    }
    // 0 = new, 1 = on the path, 2 = done.
    let mut mark: BTreeMap<&str, u8> = BTreeMap::new();
    fn visit<'a>(
        id: &'a str,
        steps: &'a [Step],
        mark: &mut BTreeMap<&'a str, u8>,
    ) -> Result<(), String> {
        if id == END {
            return Ok(());
        }
        match mark.get(id) {
            Some(1) => return Err(id.to_string()),
            Some(2) => return Ok(()),
            _ => {}
        }
        mark.insert(id, 1);
        if let Some(s) = steps.iter().find(|s| s.id == id) {
            for n in succ(s) {
                visit(n, steps, mark)?;
            }
        }
        mark.insert(id, 2);
        Ok(())
    }
    for s in steps {
        visit(&s.id, steps, &mut mark)?;
    }
    Ok(())
}

fn file_error(file: &Path, message: String) -> PlaybookError {
    PlaybookError {
        file: file.display().to_string(),
        error: PolicyError {
            line: 0,
            column: 0,
            field: String::new(),
            message,
        },
    }
}

/// Every `*.yaml`/`*.yml` in `dir`, in name order: the playbooks that validate, and an
/// error for each file that does not (the caller decides whether that is fatal).
pub fn load_dir(dir: &Path, avail: &Available) -> (Vec<Playbook>, Vec<PlaybookError>) {
    let mut files: Vec<_> = match std::fs::read_dir(dir) {
        Ok(rd) => rd
            .filter_map(Result::ok)
            .map(|e| e.path())
            .filter(|p| matches!(p.extension().and_then(|e| e.to_str()), Some("yaml" | "yml")))
            .collect(),
        Err(e) => {
            return (
                Vec::new(),
                vec![file_error(
                    dir,
                    format!("cannot read the playbook directory: {e}"),
                )],
            );
        }
    };
    files.sort();
    let mut out: Vec<Playbook> = Vec::new();
    let mut errors = Vec::new();
    for f in files {
        let text = match std::fs::read_to_string(&f) {
            Ok(t) => t,
            Err(e) => {
                errors.push(file_error(&f, e.to_string()));
                continue;
            }
        };
        match parse(&text, avail) {
            Ok(pb) if out.iter().any(|p| p.name == pb.name) => errors.push(PlaybookError {
                file: f.display().to_string(),
                error: PolicyError {
                    line: 1,
                    column: 1,
                    field: "field `name`: ".into(),
                    message: format!("`{}` is used by another playbook", pb.name),
                },
            }),
            Ok(pb) => out.push(pb),
            Err(error) => errors.push(PlaybookError {
                file: f.display().to_string(),
                error,
            }),
        }
    }
    (out, errors)
}
