//! What the agent does with the collector's commands. The enforcer carries them out; until
//! an enforcer is configured, [`NoEnforcer`] refuses isolation (saying so) and reports
//! backend "none".
use cordon_wire::{Command, CommandKind, CommandResult, EnforcementState};

pub trait CommandHandler: Send {
    /// Carries out `cmd` (a repeated id is answered again without running it twice).
    fn handle(&mut self, cmd: &Command) -> CommandResult;
    /// The host's enforcement state now, reported at connect and after every command.
    fn state(&self) -> EnforcementState;
}

/// An agent without an enforcer.
pub struct NoEnforcer;

impl CommandHandler for NoEnforcer {
    fn handle(&mut self, cmd: &Command) -> CommandResult {
        let message = match cmd.kind {
            CommandKind::Isolate { .. } | CommandKind::Release { .. } => {
                "this agent has no enforcer configured: nothing done"
            }
            CommandKind::RefreshInventory => "inventory is sent whenever it changes",
        };
        CommandResult {
            id: cmd.id,
            ok: false,
            message: message.into(),
        }
    }

    fn state(&self) -> EnforcementState {
        EnforcementState {
            backend: "none".into(),
            isolated: false,
            since: 0,
            expires_at: 0,
            by: String::new(),
            reason: String::new(),
        }
    }
}
