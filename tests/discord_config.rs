//! `[discord]` in firebell.toml: what is wrong is reported as `file:line: what, and what is
//! valid`, and a configured token starts Discord (the endpoint with a public key, else the
//! gateway) without the token showing anywhere.

use firebell::config::Config;
use firebell::source::SourceFile;

fn errors(text: &str) -> String {
    match Config::parse(&SourceFile::new("firebell.toml", text)) {
        Ok(_) => panic!("the config was accepted:\n{text}"),
        Err(errors) => errors.to_string(),
    }
}

#[test]
fn bad_discord_values_are_reported_with_their_line_and_what_is_valid() {
    let text = "[discord]\ntoken = \"bot-secret-token\"\napplication_id = \"12ab\"\npublic_key = \"not-hex\"\n\
                guild_id = \"guild\"\nincident_channel = \"#incidents\"\napi_url = \"ftp://discord.example\"\n";
    let errors = errors(text);
    for expected in [
        "firebell.toml:3: discord.application_id: '12ab' is not a Discord id",
        "firebell.toml:4: discord.public_key: must be the application's public key, 64 hex characters",
        "firebell.toml:5: discord.guild_id: 'guild' is not a Discord id",
        "firebell.toml:6: discord.incident_channel: '#incidents' is not a Discord id",
        "firebell.toml:7: discord.api_url: 'ftp://discord.example' must start with https://",
    ] {
        assert!(errors.contains(expected), "missing '{expected}' in:\n{errors}");
    }
    assert!(!errors.contains("bot-secret-token"), "the token leaked into an error:\n{errors}");
}

#[test]
fn a_token_needs_an_application_id_and_unknown_keys_are_named() {
    let missing = errors("[discord]\ntoken = \"bot-secret-token\"\n");
    assert!(missing.contains("firebell.toml:2: discord.application_id: needed with discord.token"), "{missing}");
    let unknown = errors("[discord]\ntoken = \"t\"\napplication_id = \"1\"\nguild = \"2\"\n");
    assert!(unknown.contains("firebell.toml:4") && unknown.contains("guild"), "{unknown}");
}

#[test]
fn a_complete_discord_section_is_accepted_and_its_token_is_redacted() {
    let text = "[discord]\ntoken = \"bot-secret-token\"\napplication_id = \"123456789012345678\"\n\
                public_key = \"3b6a27bcceb6a42d62a3a8d02a6f0d73653215771de243a63ac048a18b59da29\"\n\
                guild_id = \"223456789012345678\"\nincident_channel = \"323456789012345678\"\n";
    let config = Config::parse(&SourceFile::new("firebell.toml", text)).expect("a valid config");
    let discord = config.discord.as_ref().expect("a [discord] section");
    assert!(discord.enabled());
    assert_eq!(discord.api_url.get_ref().0, "https://discord.com/api/");
    assert!(!format!("{config:?}").contains("bot-secret-token"));
    assert_eq!(config.redactor().redact("token bot-secret-token here"), "token *** here");
}
