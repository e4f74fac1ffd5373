//! The chat grammar of SPEC §3, the same on every platform: text as typed → a [`Command`], or a
//! message saying what is valid.

use crate::config::Severity;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// `/diagnose` lists topics; `/diagnose TOPIC k=v…` runs one.
    Diagnose {
        topic: Option<String>,
        args: Vec<(String, String)>,
    },
    Remediate {
        action: Option<String>,
        args: Vec<(String, String)>,
    },
    Incident(IncidentCommand),
    Oncall {
        schedule: Option<String>,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IncidentCommand {
    Declare {
        title: String,
        severity: Option<Severity>,
        impact: Option<String>,
    },
    Ack {
        id: Option<i64>,
    },
    Resolve {
        id: Option<i64>,
        root_cause: Option<String>,
        fix: Option<String>,
        prevention: Option<String>,
    },
    Escalate {
        id: Option<i64>,
    },
    Status {
        id: Option<i64>,
        phase: StatusPhase,
        text: String,
        eta: Option<String>,
    },
    List,
    Summary {
        id: Option<i64>,
    },
    /// A line for the timeline (and the post-mortem).
    Note {
        id: Option<i64>,
        text: String,
    },
    /// The post-mortem draft, as a Markdown file in the thread.
    Postmortem {
        id: Option<i64>,
    },
    /// Something to do after the incident, owned and due (SPEC §13).
    Followup {
        id: Option<i64>,
        text: String,
        /// As typed: a person, `me`, `group:NAME`, `schedule:NAME`; the core resolves it.
        owner: Option<String>,
        due: Option<std::time::Duration>,
    },
    /// The incident's follow-ups, with Done buttons.
    Followups {
        id: Option<i64>,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StatusPhase {
    Investigating,
    Identified,
    Monitoring,
}

impl StatusPhase {
    pub fn name(self) -> &'static str {
        match self {
            StatusPhase::Investigating => "investigating",
            StatusPhase::Identified => "identified",
            StatusPhase::Monitoring => "monitoring",
        }
    }
}

pub const COMMANDS_HELP: &str = "Commands: /diagnose [TOPIC key=value…] · /remediate ACTION [key=value…] · \
/incident declare TITLE [sev=critical|high|medium|low] [impact=TEXT] · /incident ack|resolve|escalate|list|summary|postmortem [id=N] · \
/incident status investigating|identified|monitoring TEXT [eta=TEXT] · /incident note TEXT · \
/incident followup TEXT [owner=PERSON] [due=48h] · /incident followups · /oncall [SCHEDULE]";

/// Words of a command line: whitespace separates, "double", 'single' and “curly” quotes group,
/// and `key="a b"` keeps its key.
pub fn split_words(text: &str) -> Result<Vec<String>, String> {
    let mut words = Vec::new();
    let mut current = String::new();
    let mut quote: Option<char> = None;
    let mut in_word = false;
    for c in text.chars() {
        match quote {
            Some(close) if c == close => quote = None,
            Some(_) => current.push(c),
            None if c == '"' || c == '\'' => {
                quote = Some(c);
                in_word = true;
            }
            None if c == '“' => {
                quote = Some('”');
                in_word = true;
            }
            None if c == '‘' => {
                quote = Some('’');
                in_word = true;
            }
            None if c.is_whitespace() => {
                if in_word {
                    words.push(std::mem::take(&mut current));
                    in_word = false;
                }
            }
            None => {
                current.push(c);
                in_word = true;
            }
        }
    }
    if quote.is_some() {
        return Err("a quote is not closed: write key=\"several words\"".to_string());
    }
    if in_word {
        words.push(current);
    }
    Ok(words)
}

fn is_pair(word: &str) -> bool {
    word.split_once('=').is_some_and(|(key, _)| {
        !key.is_empty() && key.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
    })
}

/// Separates `key=value` words from the others, keeping order in each.
fn pairs_and_words(words: &[String]) -> (Vec<(String, String)>, Vec<String>) {
    let mut pairs = Vec::new();
    let mut rest = Vec::new();
    for word in words {
        match word.split_once('=') {
            Some((key, value)) if is_pair(word) => pairs.push((key.to_string(), value.to_string())),
            _ => rest.push(word.clone()),
        }
    }
    (pairs, rest)
}

fn take_id(pairs: &mut Vec<(String, String)>) -> Result<Option<i64>, String> {
    let Some(index) = pairs.iter().position(|(key, _)| key == "id") else {
        return Ok(None);
    };
    let (_, value) = pairs.remove(index);
    let value = value.trim_start_matches('#');
    value
        .parse::<i64>()
        .ok()
        .filter(|id| *id > 0)
        .map(Some)
        .ok_or_else(|| format!("id={value} is not an incident number: write id=42"))
}

fn take(pairs: &mut Vec<(String, String)>, key: &str) -> Option<String> {
    let index = pairs.iter().position(|(name, _)| name == key)?;
    Some(pairs.remove(index).1).filter(|value| !value.trim().is_empty())
}

fn refuse_leftovers(pairs: &[(String, String)], command: &str, valid: &str) -> Result<(), String> {
    match pairs.first() {
        Some((key, _)) => Err(format!("{command} does not take {key}=…; it takes {valid}")),
        None => Ok(()),
    }
}

/// Parses one command line (with or without the leading `/`).
pub fn parse(text: &str) -> Result<Command, String> {
    let words = split_words(text.trim())?;
    let Some((name, rest)) = words.split_first() else {
        return Err(format!("Nothing to do. {COMMANDS_HELP}"));
    };
    match name.trim_start_matches('/') {
        "diagnose" => {
            let (pairs, topic_words) = pairs_and_words(rest);
            match topic_words.as_slice() {
                [] if pairs.is_empty() => Ok(Command::Diagnose { topic: None, args: pairs }),
                [] => Err("name the topic first: /diagnose TOPIC key=value…".to_string()),
                [topic] => Ok(Command::Diagnose { topic: Some(topic.clone()), args: pairs }),
                [_, extra, ..] => Err(format!(
                    "'{extra}' is not an argument: write key=value after the topic, e.g. /diagnose queue queue=signals"
                )),
            }
        }
        "remediate" => {
            let (pairs, action_words) = pairs_and_words(rest);
            match action_words.as_slice() {
                [] => Ok(Command::Remediate { action: None, args: pairs }),
                [action] => Ok(Command::Remediate { action: Some(action.clone()), args: pairs }),
                [_, extra, ..] => Err(format!("'{extra}' is not an argument: write key=value after the action")),
            }
        }
        "incident" => parse_incident(rest).map(Command::Incident),
        "oncall" => match rest {
            [] => Ok(Command::Oncall { schedule: None }),
            [schedule] => Ok(Command::Oncall { schedule: Some(schedule.clone()) }),
            _ => Err("/oncall takes at most one schedule name, e.g. /oncall primary".to_string()),
        },
        other => Err(format!("unknown command '{other}'. {COMMANDS_HELP}")),
    }
}

/// Characters in one note.
const MAX_NOTE: usize = 2_000;
/// Characters in one follow-up.
const MAX_FOLLOWUP: usize = 300;

/// `due=48h`: from 1 s to a year.
fn parse_due(text: &str) -> Result<std::time::Duration, String> {
    let due = crate::source::Dur::parse(text).map_err(|_| {
        format!("due={text} is not a duration: write a number and a unit, e.g. due=2h, due=48h, due=7d")
    })?;
    if due.0 < std::time::Duration::from_secs(1) || due.0 > crate::config::MAX_DUE {
        return Err(format!("due={text} is out of range: give 1s to 366d"));
    }
    Ok(due.0)
}

fn parse_incident(words: &[String]) -> Result<IncidentCommand, String> {
    let Some((verb, rest)) = words.split_first() else {
        return Err("what about incidents? /incident declare|ack|resolve|escalate|status|note|followup|followups|list|summary|postmortem"
            .to_string());
    };
    let (mut pairs, free) = pairs_and_words(rest);
    match verb.as_str() {
        "declare" => {
            let severity =
                match take(&mut pairs, "sev").or_else(|| take(&mut pairs, "severity")) {
                    None => None,
                    Some(text) => Some(Severity::parse(&text).ok_or_else(|| {
                        format!("sev={text} is not a severity: write sev={}", Severity::NAMES.join("|"))
                    })?),
                };
            let impact = take(&mut pairs, "impact");
            refuse_leftovers(&pairs, "/incident declare", "sev= and impact=")?;
            let title = free.join(" ");
            if title.trim().is_empty() {
                return Err("/incident declare needs a title, e.g. /incident declare API returns 502s sev=high impact=\"checkout fails\"".to_string());
            }
            if title.chars().count() > 200 {
                return Err("the title is longer than 200 characters; put details in impact=…".to_string());
            }
            Ok(IncidentCommand::Declare { title, severity, impact })
        }
        "ack" | "acknowledge" | "escalate" | "summary" | "postmortem" | "followups" => {
            let id = take_id(&mut pairs)?;
            refuse_leftovers(&pairs, &format!("/incident {verb}"), "id=N")?;
            if let Some(word) = free.first() {
                return Err(format!("'{word}' is not understood: /incident {verb} [id=N]"));
            }
            Ok(match verb.as_str() {
                "escalate" => IncidentCommand::Escalate { id },
                "summary" => IncidentCommand::Summary { id },
                "postmortem" => IncidentCommand::Postmortem { id },
                "followups" => IncidentCommand::Followups { id },
                _ => IncidentCommand::Ack { id },
            })
        }
        "resolve" => {
            let id = take_id(&mut pairs)?;
            let root_cause = take(&mut pairs, "root_cause");
            let fix = take(&mut pairs, "fix");
            let prevention = take(&mut pairs, "prevention");
            refuse_leftovers(&pairs, "/incident resolve", "id=, root_cause=, fix= and prevention=")?;
            if let Some(word) = free.first() {
                return Err(format!(
                    "'{word}' is not understood: /incident resolve [id=N] [root_cause=\"…\" fix=\"…\" prevention=\"…\"]"
                ));
            }
            Ok(IncidentCommand::Resolve { id, root_cause, fix, prevention })
        }
        "status" => {
            let id = take_id(&mut pairs)?;
            let eta = take(&mut pairs, "eta");
            refuse_leftovers(&pairs, "/incident status", "id= and eta=")?;
            let Some((phase, text)) = free.split_first() else {
                return Err("/incident status needs a phase and text: /incident status investigating|identified|monitoring TEXT".to_string());
            };
            let phase = match phase.as_str() {
                "investigating" => StatusPhase::Investigating,
                "identified" => StatusPhase::Identified,
                "monitoring" => StatusPhase::Monitoring,
                other => {
                    return Err(format!("'{other}' is not a phase: write investigating, identified or monitoring"));
                }
            };
            let text = text.join(" ");
            if text.trim().is_empty() {
                return Err(format!("say what is happening: /incident status {} TEXT", phase.name()));
            }
            Ok(IncidentCommand::Status { id, phase, text, eta })
        }
        "note" => {
            let id = take_id(&mut pairs)?;
            refuse_leftovers(&pairs, "/incident note", "id=")?;
            let text = free.join(" ");
            if text.trim().is_empty() {
                return Err(
                    "say what to note: /incident note TEXT, e.g. /incident note rolled back the deploy".to_string()
                );
            }
            if text.chars().count() > MAX_NOTE {
                return Err(format!("the note is longer than {MAX_NOTE} characters; split it into several notes"));
            }
            Ok(IncidentCommand::Note { id, text })
        }
        "followup" => {
            let id = take_id(&mut pairs)?;
            let owner = take(&mut pairs, "owner");
            let due = take(&mut pairs, "due").map(|due| parse_due(&due)).transpose()?;
            refuse_leftovers(&pairs, "/incident followup", "id=, owner= and due=")?;
            let text = free.join(" ");
            if text.trim().is_empty() {
                return Err("say what to follow up: /incident followup TEXT [owner=PERSON] [due=48h], e.g. \
                            /incident followup \"alert on queue depth\" owner=slack:U0001 due=2d"
                    .to_string());
            }
            if text.chars().count() > MAX_FOLLOWUP {
                return Err(format!("the follow-up is longer than {MAX_FOLLOWUP} characters; put details in a note"));
            }
            Ok(IncidentCommand::Followup { id, text, owner, due })
        }
        "list" => Ok(IncidentCommand::List),
        other => Err(format!(
            "'/incident {other}' is not a command; valid: declare, ack, resolve, escalate, status, note, followup, followups, list, summary, postmortem"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn diagnose_with_and_without_topic() {
        assert_eq!(parse("/diagnose").unwrap(), Command::Diagnose { topic: None, args: vec![] });
        assert_eq!(
            parse("/diagnose queue queue=signals").unwrap(),
            Command::Diagnose { topic: Some("queue".into()), args: vec![("queue".into(), "signals".into())] }
        );
        assert!(parse("/diagnose queue signals").unwrap_err().contains("'signals' is not an argument"));
    }

    #[test]
    fn declare_with_quotes_severity_and_impact() {
        let command =
            parse("/incident declare API returns 502s sev=critical impact=\"checkout fails for everyone\"").unwrap();
        assert_eq!(
            command,
            Command::Incident(IncidentCommand::Declare {
                title: "API returns 502s".into(),
                severity: Some(Severity::Critical),
                impact: Some("checkout fails for everyone".into()),
            })
        );
        assert!(parse("/incident declare x sev=urgent").unwrap_err().contains("critical|high|medium|low"));
        assert!(parse("/incident declare sev=high").unwrap_err().contains("needs a title"));
        assert!(parse("/incident declare x owner=bob").unwrap_err().contains("does not take owner"));
    }

    #[test]
    fn incident_verbs() {
        assert_eq!(parse("/incident ack id=#7").unwrap(), Command::Incident(IncidentCommand::Ack { id: Some(7) }));
        assert_eq!(parse("/incident ack").unwrap(), Command::Incident(IncidentCommand::Ack { id: None }));
        assert!(parse("/incident ack id=x").unwrap_err().contains("write id=42"));
        assert_eq!(
            parse("/incident status identified “bad deploy” rolling back eta=15m").unwrap(),
            Command::Incident(IncidentCommand::Status {
                id: None,
                phase: StatusPhase::Identified,
                text: "bad deploy rolling back".into(),
                eta: Some("15m".into())
            })
        );
        assert!(parse("/incident status fixing it").unwrap_err().contains("investigating, identified or monitoring"));
        assert_eq!(
            parse("/incident resolve root_cause='disk full' fix=\"cleaned up\"").unwrap(),
            Command::Incident(IncidentCommand::Resolve {
                id: None,
                root_cause: Some("disk full".into()),
                fix: Some("cleaned up".into()),
                prevention: None
            })
        );
        assert!(parse("/incident frobnicate").unwrap_err().contains("valid: declare, ack"));
        assert!(parse("/incident declare \"unclosed").unwrap_err().contains("quote is not closed"));
    }

    #[test]
    fn followups_with_owner_and_due() {
        assert_eq!(
            parse("/incident followup \"alert on queue depth\" owner=group:leads due=2d").unwrap(),
            Command::Incident(IncidentCommand::Followup {
                id: None,
                text: "alert on queue depth".into(),
                owner: Some("group:leads".into()),
                due: Some(std::time::Duration::from_secs(2 * 86_400)),
            })
        );
        assert_eq!(
            parse("/incident followup add a runbook id=3").unwrap(),
            Command::Incident(IncidentCommand::Followup {
                id: Some(3),
                text: "add a runbook".into(),
                owner: None,
                due: None
            })
        );
        assert!(parse("/incident followup owner=me").unwrap_err().contains("say what to follow up"));
        assert!(parse("/incident followup x due=soon").unwrap_err().contains("due=soon is not a duration"));
        assert!(parse("/incident followup x due=500ms").unwrap_err().contains("give 1s to 366d"));
        assert!(parse("/incident followup x due=400d").unwrap_err().contains("give 1s to 366d"));
        assert!(parse("/incident followup x eta=1h").unwrap_err().contains("takes id=, owner= and due="));
        assert_eq!(parse("/incident followups").unwrap(), Command::Incident(IncidentCommand::Followups { id: None }));
    }

    #[test]
    fn other_commands() {
        assert_eq!(parse("/oncall primary").unwrap(), Command::Oncall { schedule: Some("primary".into()) });
        assert_eq!(parse("oncall").unwrap(), Command::Oncall { schedule: None });
        assert!(parse("/deploy now").unwrap_err().starts_with("unknown command 'deploy'"));
        assert_eq!(
            parse("/remediate restart-worker queue=a").unwrap(),
            Command::Remediate { action: Some("restart-worker".into()), args: vec![("queue".into(), "a".into())] }
        );
    }
}
