//! The slash commands firebell registers with Discord, and their options turned back into the
//! command text the core's grammar reads (SPEC §3), so `/diagnose topic:queue args:queue=signals`
//! reaches the core as `/diagnose queue queue=signals`.
//!
//! `/diagnose` and `/remediate` offer the catalogue's topics and remediations as choices while
//! there are at most 25 (Discord's limit), and through autocomplete beyond that; runbook
//! arguments go in one free `args` option (`key=value …`), since each topic takes others.
//!
//! The definitions are serenity's `CreateCommand`/`CreateCommandOption` builders; invocations
//! arrive as serenity's typed `CommandData`.

use serenity::all::{CommandData, CommandDataOption, CommandDataOptionValue, CommandOptionType, CommandType};
use serenity::builder::{AutocompleteChoice, CreateCommand, CreateCommandOption};

use super::render::clip;
use crate::runbook::Catalogue;

/// Choices Discord shows for one option; beyond it, autocomplete.
pub const MAX_CHOICES: usize = 25;
const MAX_DESCRIPTION: usize = 100;
const MAX_CHOICE_NAME: usize = 100;
const MAX_CHOICE_VALUE: usize = 100;

/// Options whose value is a word of the command rather than `key=value`, in the order the
/// grammar expects them.
const POSITIONAL: [&str; 6] = ["topic", "action", "schedule", "title", "phase", "text"];

/// Every command, for Discord's bulk overwrite (`PUT …/commands`).
pub fn definitions(catalogue: &Catalogue) -> Vec<CreateCommand> {
    let topics: Vec<(String, String)> =
        catalogue.runbooks().map(|runbook| (runbook.name.clone(), runbook.summary.clone())).collect();
    let remediations: Vec<(String, String)> = catalogue
        .runbooks()
        .flat_map(|runbook| {
            runbook.remediations.iter().map(|remediation| (remediation.name.clone(), remediation.summary.clone()))
        })
        .collect();
    let id = || integer("id", "Incident number (default: the incident of this thread)");
    let command = |name: &str, description: &str, options: Vec<CreateCommandOption>| {
        CreateCommand::new(name).kind(CommandType::ChatInput).description(description).set_options(options)
    };
    vec![
        command(
            "diagnose",
            "Run a runbook's checks; results stream into the incident's thread",
            vec![
                pick("topic", "Runbook to run (leave out to list them)", &topics, false),
                string("args", "Arguments as key=value …, e.g. queue=signals", false),
            ],
        ),
        command(
            "remediate",
            "Ask to run a remediation; it runs once someone else approves",
            vec![
                pick("action", "Remediation to run (leave out to list them)", &remediations, false),
                string("args", "Arguments as key=value …", false),
            ],
        ),
        command(
            "incident",
            "Declare and act on incidents",
            vec![
                subcommand(
                    "declare",
                    "Open an incident: notification, thread and escalation",
                    vec![
                        string("title", "What is wrong", true).max_length(200),
                        choices("sev", "Severity (default: high)", &["critical", "high", "medium", "low"], false),
                        string("impact", "Who or what is affected", false),
                    ],
                ),
                subcommand("ack", "Acknowledge: stops the escalation", vec![id()]),
                subcommand(
                    "resolve",
                    "Resolve (leave the fields out to fill them in a form)",
                    vec![
                        id(),
                        string("root_cause", "Root cause", false),
                        string("fix", "Fix", false),
                        string("prevention", "Prevention", false),
                    ],
                ),
                subcommand("escalate", "Page the next escalation step now", vec![id()]),
                subcommand(
                    "status",
                    "Post a status update in the incident's thread",
                    vec![
                        choices("phase", "Phase", &["investigating", "identified", "monitoring"], true),
                        string("text", "What is happening", true),
                        string("eta", "Expected time to resolve", false),
                        id(),
                    ],
                ),
                subcommand(
                    "note",
                    "Add a note to the incident's timeline",
                    vec![string("text", "The note", true), id()],
                ),
                subcommand(
                    "followup",
                    "Record a follow-up; its owner is reminded when it is due",
                    vec![
                        string("text", "What to do", true).max_length(300),
                        CreateCommandOption::new(CommandOptionType::User, "owner", "Who owns it (default: you)"),
                        string("due", "When it is due, e.g. 48h or 7d", false),
                        id(),
                    ],
                ),
                subcommand("followups", "The incident's follow-ups, with Done buttons", vec![id()]),
                subcommand("list", "Open incidents", vec![]),
                subcommand("summary", "The incident's notification or resolution summary", vec![id()]),
                subcommand("postmortem", "The post-mortem draft, as a Markdown file", vec![id()]),
            ],
        ),
        command("oncall", "Who is on call now and next", vec![string("schedule", "Schedule (default: all)", false)]),
    ]
}

fn string(name: &str, description: &str, required: bool) -> CreateCommandOption {
    CreateCommandOption::new(CommandOptionType::String, name, clip(description, MAX_DESCRIPTION)).required(required)
}

fn integer(name: &str, description: &str) -> CreateCommandOption {
    CreateCommandOption::new(CommandOptionType::Integer, name, clip(description, MAX_DESCRIPTION))
        .required(false)
        .min_int_value(1)
}

fn choices(name: &str, description: &str, values: &[&str], required: bool) -> CreateCommandOption {
    values.iter().fold(string(name, description, required), |option, value| option.add_string_choice(*value, *value))
}

/// A string option offering `items` (name, summary): as choices while they fit, else through
/// autocomplete.
fn pick(name: &str, description: &str, items: &[(String, String)], required: bool) -> CreateCommandOption {
    let option = string(name, description, required);
    if items.is_empty() {
        return option;
    }
    if items.len() <= MAX_CHOICES {
        items.iter().fold(option, |option, (value, summary)| {
            let (name, value) = choice_text(value, summary);
            option.add_string_choice(name, value)
        })
    } else {
        option.set_autocomplete(true)
    }
}

/// A choice's (name, value): the name says what it is, cut to Discord's limits.
fn choice_text(value: &str, summary: &str) -> (String, String) {
    let name = if summary.is_empty() { value.to_string() } else { format!("{value} — {summary}") };
    (clip(&name, MAX_CHOICE_NAME), clip(value, MAX_CHOICE_VALUE))
}

fn subcommand(name: &str, description: &str, options: Vec<CreateCommandOption>) -> CreateCommandOption {
    options.into_iter().fold(
        CreateCommandOption::new(CommandOptionType::SubCommand, name, clip(description, MAX_DESCRIPTION)),
        CreateCommandOption::add_sub_option,
    )
}

/// Up to 25 suggestions for the option being typed (`topic` of `/diagnose`, `action` of
/// `/remediate`): names starting with what was typed first, then names containing it.
pub fn autocomplete(catalogue: &Catalogue, command: &str, option: &str, typed: &str) -> Vec<AutocompleteChoice> {
    suggestions(catalogue, command, option, typed)
        .into_iter()
        .map(|(name, value)| AutocompleteChoice::new(name, value))
        .collect()
}

/// The suggestions as (name, value).
fn suggestions(catalogue: &Catalogue, command: &str, option: &str, typed: &str) -> Vec<(String, String)> {
    let items: Vec<(String, String)> = match (command, option) {
        ("diagnose", "topic") => {
            catalogue.runbooks().map(|runbook| (runbook.name.clone(), runbook.summary.clone())).collect()
        }
        ("remediate", "action") => catalogue
            .runbooks()
            .flat_map(|runbook| runbook.remediations.iter().map(|r| (r.name.clone(), r.summary.clone())))
            .collect(),
        _ => Vec::new(),
    };
    let typed = typed.trim().to_lowercase();
    let starts = items.iter().filter(|(name, _)| name.to_lowercase().starts_with(&typed));
    let contains = items.iter().filter(|(name, summary)| {
        !name.to_lowercase().starts_with(&typed)
            && (name.to_lowercase().contains(&typed) || summary.to_lowercase().contains(&typed))
    });
    starts.chain(contains).take(MAX_CHOICES).map(|(name, summary)| choice_text(name, summary)).collect()
}

/// The option being typed in an autocomplete interaction: (command, option name, typed text).
pub fn focused(data: &CommandData) -> Option<(String, String, String)> {
    let option = data.autocomplete()?;
    Some((data.name.clone(), option.name.to_string(), option.value.to_string()))
}

/// The command text for an application command's `data`: its name, then its subcommand, the
/// positional options, `key=value` options (quoted when needed) and finally the raw `args`.
pub fn command_text(data: &CommandData) -> String {
    let mut words = vec![format!("/{}", data.name)];
    let mut options: &[CommandDataOption] = &data.options;
    if let Some((name, inner)) = options.iter().find_map(|option| match &option.value {
        CommandDataOptionValue::SubCommand(inner) => Some((&option.name, inner)),
        _ => None,
    }) {
        words.push(name.clone());
        options = inner;
    }
    let given: Vec<(String, String)> =
        options.iter().filter_map(|option| Some((option.name.clone(), value_text(&option.value)?))).collect();
    for positional in POSITIONAL {
        if let Some((_, value)) = given.iter().find(|(name, _)| name == positional) {
            words.push(quote(value));
        }
    }
    for (name, value) in &given {
        if !POSITIONAL.contains(&name.as_str()) && name != "args" {
            words.push(format!("{name}={}", quote(value)));
        }
    }
    if let Some((_, args)) = given.iter().find(|(name, _)| name == "args")
        && !args.trim().is_empty()
    {
        words.push(args.trim().to_string());
    }
    words.join(" ")
}

/// An option's value as a word; `None` for groups and for values Discord did not describe.
fn value_text(value: &CommandDataOptionValue) -> Option<String> {
    Some(match value {
        CommandDataOptionValue::String(text) => text.clone(),
        CommandDataOptionValue::Autocomplete { value, .. } => value.clone(),
        CommandDataOptionValue::Integer(number) => number.to_string(),
        CommandDataOptionValue::Number(number) => number.to_string(),
        CommandDataOptionValue::Boolean(flag) => flag.to_string(),
        // As a mention, so the core knows it is a person of this platform.
        CommandDataOptionValue::User(id) => format!("<@{id}>"),
        CommandDataOptionValue::Channel(id) => id.to_string(),
        CommandDataOptionValue::Role(id) => id.to_string(),
        CommandDataOptionValue::Mentionable(id) => id.to_string(),
        CommandDataOptionValue::Attachment(id) => id.to_string(),
        _ => return None,
    })
}

/// One word of the grammar: as it is when it has no space or quote, else in a quote it does not
/// contain.
fn quote(value: &str) -> String {
    let value = value.trim();
    if !value.is_empty() && !value.chars().any(|c| c.is_whitespace() || "\"'“”‘’".contains(c)) {
        return value.to_string();
    }
    if !value.contains('"') {
        format!("\"{value}\"")
    } else if !value.contains('\'') {
        format!("'{value}'")
    } else {
        // Inside “…” only ” closes the quote.
        format!("“{}”", value.replace('”', "\""))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chat::grammar::{self, Command, IncidentCommand};
    use serde_json::{Value, json};

    /// An application command's `data` as Discord sends it (`id` added when left out).
    fn command_data(mut value: Value) -> CommandData {
        if value.get("id").is_none() {
            value["id"] = json!("1100000000000000100");
        }
        if value.get("type").is_none() {
            value["type"] = json!(1);
        }
        let interaction = json!({"type": 2, "id": "1", "application_id": "4242", "token": "t", "version": 1,
            "channel_id": "900", "user": {"id": "1", "username": "a", "discriminator": "0"}, "locale": "en-US",
            "entitlements": [], "attachment_size_limit": 10_485_760, "data": value});
        match super::super::inbound::parse_value(interaction).expect("command data as Discord sends it") {
            serenity::all::Interaction::Command(command) => command.data,
            other => panic!("{other:?}"),
        }
    }

    fn data(value: Value) -> String {
        command_text(&command_data(value))
    }

    #[test]
    fn options_become_the_grammar_s_command_text() {
        let diagnose = data(json!({"name": "diagnose", "type": 1, "options": [
            {"name": "args", "type": 3, "value": "queue=signals limit=5"},
            {"name": "topic", "type": 3, "value": "queue"},
        ]}));
        assert_eq!(diagnose, "/diagnose queue queue=signals limit=5");
        assert_eq!(data(json!({"name": "diagnose", "type": 1})), "/diagnose");
        let declare =
            data(json!({"name": "incident", "type": 1, "options": [{"name": "declare", "type": 1, "options": [
                {"name": "title", "type": 3, "value": "API returns 502s"},
                {"name": "sev", "type": 3, "value": "critical"},
                {"name": "impact", "type": 3, "value": "checkout \"fails\" for 'some'"},
            ]}]}));
        assert_eq!(
            declare,
            "/incident declare \"API returns 502s\" sev=critical impact=“checkout \"fails\" for 'some'”"
        );
        let Command::Incident(IncidentCommand::Declare { title, severity, impact }) = grammar::parse(&declare).unwrap()
        else {
            panic!("a declare")
        };
        assert_eq!(title, "API returns 502s");
        assert_eq!(severity, Some(crate::config::Severity::Critical));
        assert_eq!(impact.as_deref(), Some("checkout \"fails\" for 'some'"));
        let status = data(json!({"name": "incident", "type": 1, "options": [{"name": "status", "type": 1, "options": [
            {"name": "id", "type": 4, "value": 7},
            {"name": "text", "type": 3, "value": "rolling back the deploy"},
            {"name": "phase", "type": 3, "value": "identified"},
        ]}]}));
        assert_eq!(status, "/incident status identified \"rolling back the deploy\" id=7");
        assert!(matches!(
            grammar::parse(&status).unwrap(),
            Command::Incident(IncidentCommand::Status { id: Some(7), text, .. }) if text == "rolling back the deploy"
        ));
        let resolve = data(json!({"name": "incident", "options": [{"name": "resolve", "type": 1}]}));
        assert_eq!(resolve, "/incident resolve");
    }

    #[test]
    fn focused_option_is_found_inside_subcommands_too() {
        let typed =
            json!({"name": "diagnose", "options": [{"name": "topic", "type": 3, "value": "qu", "focused": true}]});
        assert_eq!(focused(&command_data(typed)), Some(("diagnose".into(), "topic".into(), "qu".into())));
        let nested = json!({"name": "incident", "options": [{"name": "declare", "type": 1, "options": [
            {"name": "title", "type": 3, "value": "x", "focused": true}]}]});
        assert_eq!(focused(&command_data(nested)).unwrap().1, "title");
    }

    fn catalogue(topics: usize) -> Catalogue {
        let files: Vec<crate::source::SourceFile> = (0..topics)
            .map(|index| {
                let text = format!(
                    "name = \"topic{index:02}\"\nsummary = \"Topic number {index}\"\n\n[[checks]]\nname = \"port\"\nkind = \"tcp\"\nhost = \"127.0.0.1\"\nport = 9\n"
                );
                crate::source::SourceFile::new(format!("topic{index:02}.toml"), &text)
            })
            .collect();
        let (catalogue, errors) = Catalogue::load(&files, &crate::runbook::TargetRefs::Unchecked);
        assert!(errors.is_empty(), "{errors:?}");
        catalogue
    }

    #[test]
    fn topics_are_choices_up_to_25_then_autocomplete() {
        let few = serde_json::to_value(definitions(&catalogue(3))).unwrap();
        let topic = &few[0]["options"][0];
        assert_eq!(few[0]["type"], 1);
        assert_eq!(topic["choices"].as_array().unwrap().len(), 3);
        assert_eq!(topic["choices"][1], json!({"name": "topic01 — Topic number 1", "value": "topic01"}));
        assert_eq!(topic["autocomplete"], false);

        let many = catalogue(30);
        let definitions = serde_json::to_value(definitions(&many)).unwrap();
        let topic = &definitions[0]["options"][0];
        assert_eq!(topic["choices"], json!([]));
        assert_eq!(topic["autocomplete"], true);
        let suggested = serde_json::to_value(autocomplete(&many, "diagnose", "topic", "topic1")).unwrap();
        let values: Vec<&str> =
            suggested.as_array().unwrap().iter().map(|choice| choice["value"].as_str().unwrap()).collect();
        assert_eq!(
            values,
            [
                "topic10", "topic11", "topic12", "topic13", "topic14", "topic15", "topic16", "topic17", "topic18",
                "topic19"
            ]
        );
        assert_eq!(autocomplete(&many, "diagnose", "topic", "").len(), MAX_CHOICES);
        assert_eq!(suggestions(&many, "diagnose", "topic", "number 7")[0].1, "topic07", "summaries match too");
        assert!(autocomplete(&many, "oncall", "schedule", "x").is_empty());
    }

    #[test]
    fn quoting_survives_every_quote_character() {
        for value in ["plain", "two words", "say \"hi\"", "it's \"x\"", "a ” b ' c \" d"] {
            let text = format!("/incident declare {}", quote(value));
            match grammar::parse(&text).unwrap() {
                Command::Incident(IncidentCommand::Declare { title, .. }) => {
                    assert_eq!(title, value.replace('”', "\""), "{text}")
                }
                other => panic!("{other:?}"),
            }
        }
    }
}
