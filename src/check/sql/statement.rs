//! Whether a check's SQL text is one statement that only reads: a lexer per dialect (strings,
//! quoted names, comments, dollar quotes) and the rule applied to its tokens. Pure text work, no
//! IO; the databases enforce read-only themselves, this refuses at load what they would let by.

use std::fmt;

/// Statements a check may start with, as the refusal lists them.
const ALLOWED: &str = "one SELECT, WITH … SELECT, VALUES, TABLE, SHOW, EXPLAIN or DESCRIBE statement \
                       (on SQLite also a PRAGMA that reads, such as table_info(…))";

/// Words that begin a statement which writes or acts, for EXPLAIN and WITH to look for.
const WRITING_STATEMENTS: [&str; 22] = [
    "INSERT", "UPDATE", "DELETE", "MERGE", "REPLACE", "UPSERT", "CREATE", "DROP", "ALTER", "TRUNCATE", "RENAME",
    "GRANT", "REVOKE", "CALL", "DO", "EXECUTE", "COPY", "LOAD", "LOCK", "SET", "VACUUM", "REINDEX",
];

/// Words EXPLAIN takes before the statement it explains (PostgreSQL, MySQL/MariaDB, SQLite).
const EXPLAIN_OPTIONS: [&str; 14] = [
    "ANALYZE",
    "ANALYSE",
    "VERBOSE",
    "EXTENDED",
    "PARTITIONS",
    "FORMAT",
    "JSON",
    "TEXT",
    "TREE",
    "TRADITIONAL",
    "XML",
    "YAML",
    "QUERY",
    "PLAN",
];

/// Functions whose effect escapes a read-only transaction: they end other sessions, take
/// session-wide locks that outlive the check's transaction in a pooled connection, change
/// settings (the statement timeout), reach other servers or write files.
const SIDE_EFFECT_FUNCTIONS: [&str; 27] = [
    "pg_terminate_backend",
    "pg_cancel_backend",
    "pg_reload_conf",
    "pg_rotate_logfile",
    "pg_switch_wal",
    "pg_promote",
    "pg_create_restore_point",
    "pg_drop_replication_slot",
    "pg_logical_emit_message",
    "pg_notify",
    "pg_file_write",
    "pg_file_rename",
    "pg_file_unlink",
    "set_config",
    "lo_import",
    "lo_export",
    "lo_unlink",
    "get_lock",
    "release_lock",
    "release_all_locks",
    "sys_exec",
    "sys_eval",
    "load_extension",
    "writefile",
    "pg_stat_reset",
    "pg_log_backend_memory_contexts",
    "pg_replication_origin_create",
];

/// Families of such functions, by the start of their names.
const SIDE_EFFECT_PREFIXES: [&str; 6] =
    ["pg_advisory_", "pg_try_advisory_", "dblink", "pg_create_", "pg_stat_reset_", "pg_replication_origin_"];

/// SQLite PRAGMAs a check may read, written without an argument.
const READ_PRAGMAS: [&str; 26] = [
    "application_id",
    "auto_vacuum",
    "busy_timeout",
    "cache_size",
    "collation_list",
    "compile_options",
    "data_version",
    "database_list",
    "encoding",
    "foreign_key_check",
    "foreign_keys",
    "freelist_count",
    "function_list",
    "integrity_check",
    "journal_mode",
    "module_list",
    "page_count",
    "page_size",
    "pragma_list",
    "query_only",
    "quick_check",
    "schema_version",
    "synchronous",
    "table_list",
    "user_version",
    "wal_autocheckpoint",
];

/// SQLite PRAGMAs that read with an argument, `PRAGMA table_info(signals)`.
const READ_PRAGMAS_WITH_ARGUMENT: [&str; 10] = [
    "table_info",
    "table_xinfo",
    "table_list",
    "index_list",
    "index_info",
    "index_xinfo",
    "foreign_key_list",
    "foreign_key_check",
    "integrity_check",
    "quick_check",
];

/// Whose SQL the text is: where strings, names and comments begin and end differs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    Postgres,
    Mysql,
    Sqlite,
}

impl Dialect {
    pub const ALL: [Dialect; 3] = [Dialect::Postgres, Dialect::Mysql, Dialect::Sqlite];
}

/// Why a check's query may not run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// Nothing but comments and spaces.
    Empty,
    /// A string, quoted name or comment that never ends.
    Unterminated(&'static str),
    MultipleStatements,
    /// The statement begins with a word that is not a read.
    NotARead(String),
    /// `WITH …` or `EXPLAIN …` around a statement that writes.
    WrapsAWrite {
        wrapper: &'static str,
        statement: String,
    },
    SideEffectFunction(String),
    IntoFile(String),
    /// MySQL's `/*! … */` comments run their content.
    ExecutableComment,
    PragmaWrite(String),
    PragmaNotRead(String),
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let rest = format!("a check's query is {ALLOWED}; writes belong in [[remediations]]");
        match self {
            Refusal::Empty => write!(f, "query is empty; {rest}"),
            Refusal::Unterminated(what) => write!(f, "query has an unterminated {what}; {rest}"),
            Refusal::MultipleStatements => {
                write!(f, "query holds more than one statement (a ';' with more after it); {rest}")
            }
            Refusal::NotARead(keyword) => write!(f, "query starts with {keyword}, which is not a read; {rest}"),
            Refusal::WrapsAWrite { wrapper, statement } => {
                write!(f, "query is {wrapper} … {statement}, which writes; {rest}")
            }
            Refusal::SideEffectFunction(name) => write!(
                f,
                "query calls {name}(…), which acts outside a read-only transaction (sessions, locks, settings, \
                 files or other servers); {rest}"
            ),
            Refusal::IntoFile(into) => {
                write!(f, "query has INTO {into}, which writes a file on the database server; {rest}")
            }
            Refusal::ExecutableComment => {
                write!(f, "query has a /*! … */ comment, which MySQL and MariaDB run as SQL; write it out; {rest}")
            }
            Refusal::PragmaWrite(name) => write!(f, "query sets PRAGMA {name}; {rest}"),
            Refusal::PragmaNotRead(name) => write!(
                f,
                "query runs PRAGMA {name}, which is not one that only reads; checks may read {} and \
                 {}(…); {rest}",
                READ_PRAGMAS.join(", "),
                READ_PRAGMAS_WITH_ARGUMENT.join("(…), ")
            ),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Token {
    /// An unquoted word, upper-cased.
    Word(String),
    /// A quoted name's text, upper-cased: `"pg_sleep"` still names a function.
    Quoted(String),
    Literal,
    Symbol(char),
}

/// Checks that `query` is one statement that only reads, as `dialect` reads the text.
pub fn check_read_only(query: &str, dialect: Dialect) -> Result<(), Refusal> {
    let tokens = tokenize(query, dialect)?;
    let mut statements = tokens.split(|token| *token == Token::Symbol(';')).filter(|statement| !statement.is_empty());
    let Some(statement) = statements.next() else {
        return Err(Refusal::Empty);
    };
    if statements.next().is_some() {
        return Err(Refusal::MultipleStatements);
    }
    check_statement(statement, dialect)?;
    check_calls(statement)
}

/// At load the target's kind is not known: a query passes when some dialect reads it as one
/// statement that only reads (the run checks it again against the real one). Otherwise the
/// refusal is the first dialect's.
pub fn check_read_only_in_any_dialect(query: &str) -> Result<(), Refusal> {
    let mut first_refusal = None;
    for dialect in Dialect::ALL {
        match check_read_only(query, dialect) {
            Ok(()) => return Ok(()),
            Err(refusal) => {
                first_refusal.get_or_insert(refusal);
            }
        }
    }
    Err(first_refusal.unwrap_or(Refusal::Empty))
}

fn check_statement(tokens: &[Token], dialect: Dialect) -> Result<(), Refusal> {
    // `(SELECT …) UNION (SELECT …)` starts with a parenthesis.
    let start = tokens.iter().position(|token| *token != Token::Symbol('(')).unwrap_or(tokens.len());
    let (keyword, rest) = match &tokens[start..] {
        [Token::Word(keyword), rest @ ..] => (keyword.as_str(), rest),
        [Token::Quoted(name), ..] => return Err(Refusal::NotARead(format!("\"{name}\""))),
        [_, ..] => return Err(Refusal::NotARead("a symbol".to_string())),
        [] => return Err(Refusal::Empty),
    };
    match keyword {
        "SELECT" | "VALUES" | "TABLE" | "SHOW" => Ok(()),
        "WITH" => check_with(rest),
        "EXPLAIN" | "DESCRIBE" | "DESC" => check_explain(keyword, rest, dialect),
        "PRAGMA" if dialect == Dialect::Sqlite => check_pragma(rest),
        other => Err(Refusal::NotARead(other.to_string())),
    }
}

/// The statement after `WITH name AS (…), …` is the first statement word outside parentheses.
fn check_with(tokens: &[Token]) -> Result<(), Refusal> {
    let mut depth = 0usize;
    for token in tokens {
        match token {
            Token::Symbol('(') => depth += 1,
            Token::Symbol(')') => depth = depth.saturating_sub(1),
            Token::Word(word) if depth == 0 => {
                if matches!(word.as_str(), "SELECT" | "VALUES" | "TABLE") {
                    return Ok(());
                }
                if WRITING_STATEMENTS.contains(&word.as_str()) {
                    return Err(Refusal::WrapsAWrite { wrapper: "WITH", statement: word.clone() });
                }
            }
            _ => {}
        }
    }
    Err(Refusal::WrapsAWrite { wrapper: "WITH", statement: "something other than SELECT".to_string() })
}

/// `EXPLAIN [options] statement` and MySQL's `DESCRIBE statement`: the explained statement must
/// read too (PostgreSQL's `EXPLAIN ANALYZE` runs it). `DESCRIBE table` and `EXPLAIN table`
/// name a table, which is a read.
fn check_explain(keyword: &str, tokens: &[Token], dialect: Dialect) -> Result<(), Refusal> {
    let mut index = 0;
    // PostgreSQL's option list: EXPLAIN (ANALYZE, FORMAT JSON) …
    if tokens.first() == Some(&Token::Symbol('(')) {
        let mut depth = 0usize;
        for (position, token) in tokens.iter().enumerate() {
            match token {
                Token::Symbol('(') => depth += 1,
                Token::Symbol(')') => {
                    depth = depth.saturating_sub(1);
                    if depth == 0 {
                        index = position + 1;
                        break;
                    }
                }
                _ => {}
            }
        }
    }
    while let Some(token) = tokens.get(index) {
        match token {
            Token::Word(word) if EXPLAIN_OPTIONS.contains(&word.as_str()) => index += 1,
            Token::Symbol('=') => index += 1,
            _ => break,
        }
    }
    let explained = &tokens[index..];
    match explained.first() {
        Some(Token::Word(word)) if matches!(word.as_str(), "SELECT" | "VALUES" | "TABLE" | "WITH" | "SHOW") => {
            check_statement(explained, dialect)
        }
        Some(Token::Symbol('(')) => check_statement(explained, dialect),
        Some(Token::Word(word)) if WRITING_STATEMENTS.contains(&word.as_str()) => {
            let wrapper = if keyword == "EXPLAIN" { "EXPLAIN" } else { "DESCRIBE" };
            Err(Refusal::WrapsAWrite { wrapper, statement: word.clone() })
        }
        _ => Ok(()),
    }
}

/// `PRAGMA [schema.]name`, or `PRAGMA [schema.]name(argument)` for the ones that read a table.
fn check_pragma(tokens: &[Token]) -> Result<(), Refusal> {
    let name_index = match tokens {
        [_, Token::Symbol('.'), ..] => 2,
        _ => 0,
    };
    let name = match tokens.get(name_index) {
        Some(Token::Word(name) | Token::Quoted(name)) => name.to_ascii_lowercase(),
        _ => return Err(Refusal::PragmaNotRead("without a name".to_string())),
    };
    let after = &tokens[name_index + 1..];
    if after.contains(&Token::Symbol('=')) {
        return Err(Refusal::PragmaWrite(name));
    }
    let allowed = match after.first() {
        None => READ_PRAGMAS.contains(&name.as_str()),
        Some(Token::Symbol('(')) => READ_PRAGMAS_WITH_ARGUMENT.contains(&name.as_str()),
        Some(_) => false,
    };
    if allowed { Ok(()) } else { Err(Refusal::PragmaNotRead(name)) }
}

/// Calls of functions that act beyond the transaction, and `INTO OUTFILE` / `INTO DUMPFILE`.
fn check_calls(tokens: &[Token]) -> Result<(), Refusal> {
    for pair in tokens.windows(2) {
        match pair {
            [Token::Word(name) | Token::Quoted(name), Token::Symbol('(')] => {
                let name = name.to_ascii_lowercase();
                let acts = SIDE_EFFECT_FUNCTIONS.contains(&name.as_str())
                    || SIDE_EFFECT_PREFIXES.iter().any(|prefix| name.starts_with(prefix));
                if acts {
                    return Err(Refusal::SideEffectFunction(name));
                }
            }
            [Token::Word(into), Token::Word(file)] if into == "INTO" && (file == "OUTFILE" || file == "DUMPFILE") => {
                return Err(Refusal::IntoFile(file.clone()));
            }
            _ => {}
        }
    }
    Ok(())
}

fn is_word_char(character: char, dialect: Dialect) -> bool {
    character.is_alphanumeric() || character == '_' || (character == '$' && dialect != Dialect::Sqlite)
}

/// The text as tokens; comments and spaces are dropped.
fn tokenize(query: &str, dialect: Dialect) -> Result<Vec<Token>, Refusal> {
    let characters: Vec<char> = query.chars().collect();
    let mut tokens = Vec::new();
    let mut index = 0;
    while index < characters.len() {
        let character = characters[index];
        let next = characters.get(index + 1).copied();
        if character.is_whitespace() {
            index += 1;
        } else if (character == '-' && next == Some('-') && starts_mysql_line_comment(&characters, index, dialect))
            || (character == '#' && dialect == Dialect::Mysql)
        {
            index = end_of_line(&characters, index);
        } else if character == '/' && next == Some('*') {
            if dialect == Dialect::Mysql && matches!(characters.get(index + 2), Some('!' | 'M')) {
                return Err(Refusal::ExecutableComment);
            }
            index = end_of_block_comment(&characters, index, dialect == Dialect::Postgres)?;
        } else if character == '\'' {
            let backslashes = dialect == Dialect::Mysql;
            index = end_of_quoted(&characters, index, '\'', backslashes).ok_or(Refusal::Unterminated("string"))?;
            tokens.push(Token::Literal);
        } else if character == '"' {
            let mysql = dialect == Dialect::Mysql;
            let end = end_of_quoted(&characters, index, '"', mysql).ok_or(Refusal::Unterminated("quoted name"))?;
            tokens.push(if mysql { Token::Literal } else { quoted(&characters[index + 1..end - 1]) });
            index = end;
        } else if character == '`' && dialect != Dialect::Postgres {
            let end = end_of_quoted(&characters, index, '`', false).ok_or(Refusal::Unterminated("quoted name"))?;
            tokens.push(quoted(&characters[index + 1..end - 1]));
            index = end;
        } else if character == '[' && dialect == Dialect::Sqlite {
            let end = characters[index..].iter().position(|c| *c == ']').ok_or(Refusal::Unterminated("quoted name"))?;
            tokens.push(quoted(&characters[index + 1..index + end]));
            index += end + 1;
        } else if character == '$' && dialect == Dialect::Postgres {
            index = lex_postgres_dollar(&characters, index, &mut tokens)?;
        } else if is_word_char(character, dialect) {
            let start = index;
            while index < characters.len() && is_word_char(characters[index], dialect) {
                index += 1;
            }
            let word: String = characters[start..index].iter().collect();
            // PostgreSQL's E'…' strings take backslash escapes.
            if dialect == Dialect::Postgres && word.eq_ignore_ascii_case("e") && characters.get(index) == Some(&'\'') {
                index = end_of_quoted(&characters, index, '\'', true).ok_or(Refusal::Unterminated("string"))?;
                tokens.push(Token::Literal);
            } else if character.is_ascii_digit() {
                tokens.push(Token::Literal);
            } else {
                tokens.push(Token::Word(word.to_ascii_uppercase()));
            }
        } else {
            tokens.push(Token::Symbol(character));
            index += 1;
        }
    }
    Ok(tokens)
}

fn quoted(characters: &[char]) -> Token {
    Token::Quoted(characters.iter().collect::<String>().to_ascii_uppercase())
}

/// `--` begins a comment, except on MySQL/MariaDB where a space or control character must follow
/// (`1--1` is arithmetic there).
fn starts_mysql_line_comment(characters: &[char], index: usize, dialect: Dialect) -> bool {
    if dialect != Dialect::Mysql {
        return true;
    }
    characters.get(index + 2).is_none_or(|after| after.is_whitespace() || after.is_control())
}

fn end_of_line(characters: &[char], index: usize) -> usize {
    characters[index..].iter().position(|c| *c == '\n').map(|end| index + end + 1).unwrap_or(characters.len())
}

/// The index after the `*/` that closes the comment at `index`; PostgreSQL's nest.
fn end_of_block_comment(characters: &[char], index: usize, nested: bool) -> Result<usize, Refusal> {
    let mut depth = 0usize;
    let mut position = index;
    while position + 1 < characters.len() {
        match (characters[position], characters[position + 1]) {
            ('/', '*') if depth == 0 || nested => {
                depth += 1;
                position += 2;
            }
            ('*', '/') => {
                depth -= 1;
                position += 2;
                if depth == 0 {
                    return Ok(position);
                }
            }
            _ => position += 1,
        }
    }
    Err(Refusal::Unterminated("comment"))
}

/// The index after the quote that closes the one at `index`; a doubled quote is one character,
/// and with `backslashes` a backslash escapes the next character.
fn end_of_quoted(characters: &[char], index: usize, quote: char, backslashes: bool) -> Option<usize> {
    let mut position = index + 1;
    while position < characters.len() {
        let character = characters[position];
        if backslashes && character == '\\' {
            position += 2;
        } else if character == quote {
            if characters.get(position + 1) == Some(&quote) {
                position += 2;
            } else {
                return Some(position + 1);
            }
        } else {
            position += 1;
        }
    }
    None
}

/// `$1` is a parameter; `$$…$$` and `$tag$…$tag$` are strings.
fn lex_postgres_dollar(characters: &[char], index: usize, tokens: &mut Vec<Token>) -> Result<usize, Refusal> {
    let mut position = index + 1;
    if characters.get(position).is_some_and(char::is_ascii_digit) {
        while characters.get(position).is_some_and(char::is_ascii_digit) {
            position += 1;
        }
        tokens.push(Token::Literal);
        return Ok(position);
    }
    while characters.get(position).is_some_and(|c| c.is_alphanumeric() || *c == '_') {
        position += 1;
    }
    if characters.get(position) != Some(&'$') {
        tokens.push(Token::Symbol('$'));
        return Ok(index + 1);
    }
    let delimiter = &characters[index..=position];
    let body_start = position + 1;
    let mut search = body_start;
    while search + delimiter.len() <= characters.len() {
        if &characters[search..search + delimiter.len()] == delimiter {
            tokens.push(Token::Literal);
            return Ok(search + delimiter.len());
        }
        search += 1;
    }
    Err(Refusal::Unterminated("dollar-quoted string"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn everywhere(query: &str) -> Vec<Result<(), Refusal>> {
        Dialect::ALL.iter().map(|dialect| check_read_only(query, *dialect)).collect()
    }

    #[test]
    fn reads_pass_in_every_dialect() {
        for query in [
            "SELECT 1",
            "select count(*) from jobs where queue = $1;",
            "  -- a comment\nSELECT 1 /* another */",
            "(SELECT 1) UNION (SELECT 2)",
            "WITH recent AS (SELECT * FROM jobs) SELECT count(*) FROM recent",
            "VALUES (1), (2)",
            "SELECT ';' AS semicolon, 'DROP TABLE x; --' AS text",
            "EXPLAIN SELECT 1",
        ] {
            assert_eq!(everywhere(query), vec![Ok(()), Ok(()), Ok(())], "{query}");
        }
    }

    #[test]
    fn writes_are_refused_in_every_dialect() {
        for (query, refusal) in [
            ("DROP TABLE victim", Refusal::NotARead("DROP".to_string())),
            ("insert into t values (1)", Refusal::NotARead("INSERT".to_string())),
            ("VACUUM INTO '/tmp/copy.db'", Refusal::NotARead("VACUUM".to_string())),
            ("ATTACH 'x.db' AS x", Refusal::NotARead("ATTACH".to_string())),
            ("SET SESSION TRANSACTION READ WRITE", Refusal::NotARead("SET".to_string())),
            ("SELECT 1; DROP TABLE victim", Refusal::MultipleStatements),
            (
                "WITH x AS (SELECT 1) DELETE FROM t",
                Refusal::WrapsAWrite { wrapper: "WITH", statement: "DELETE".into() },
            ),
            ("EXPLAIN ANALYZE DELETE FROM t", Refusal::WrapsAWrite { wrapper: "EXPLAIN", statement: "DELETE".into() }),
            ("SELECT pg_terminate_backend(pid) FROM x", Refusal::SideEffectFunction("pg_terminate_backend".into())),
            ("SELECT pg_catalog.pg_advisory_lock (1)", Refusal::SideEffectFunction("pg_advisory_lock".into())),
            ("SELECT GET_LOCK('a', 10)", Refusal::SideEffectFunction("get_lock".into())),
            ("SELECT 1 INTO OUTFILE '/tmp/x'", Refusal::IntoFile("OUTFILE".into())),
            ("", Refusal::Empty),
            ("-- only a comment", Refusal::Empty),
        ] {
            for dialect in Dialect::ALL {
                assert_eq!(check_read_only(query, dialect), Err(refusal.clone()), "{query} on {dialect:?}");
            }
        }
    }

    #[test]
    fn each_dialect_reads_its_own_quotes_and_comments() {
        // PostgreSQL: a dollar-quoted ';' is text, `$1` a parameter, E'\'' one quote.
        assert_eq!(check_read_only("SELECT $$;$$, $1, $tag$ ; $tag$", Dialect::Postgres), Ok(()));
        assert_eq!(
            check_read_only(r"SELECT E'\'', pg_cancel_backend(1) --'", Dialect::Postgres),
            Err(Refusal::SideEffectFunction("pg_cancel_backend".into()))
        );
        assert_eq!(check_read_only("SELECT /* a /* nested */ ; */ 1", Dialect::Postgres), Ok(()));
        // MySQL: backslash escapes, `#` comments, and `--` needs a space to be a comment.
        assert_eq!(check_read_only(r"SELECT 'it\'s; fine'", Dialect::Mysql), Ok(()));
        assert_eq!(check_read_only("SELECT 1 # ; DROP TABLE x", Dialect::Mysql), Ok(()));
        assert_eq!(
            check_read_only("SELECT 1--get_lock('a',1)", Dialect::Mysql),
            Err(Refusal::SideEffectFunction("get_lock".into()))
        );
        assert_eq!(check_read_only("SELECT /*! 1; DROP TABLE x */", Dialect::Mysql), Err(Refusal::ExecutableComment));
        // SQLite: no backslash escapes, so this string ends at the second quote.
        assert_eq!(check_read_only(r"SELECT 'a\'; VACUUM INTO 'x'", Dialect::Sqlite), Err(Refusal::MultipleStatements));
        assert_eq!(check_read_only("SELECT [weird;name] FROM t", Dialect::Sqlite), Ok(()));
        assert_eq!(check_read_only("SELECT 'never ends", Dialect::Sqlite), Err(Refusal::Unterminated("string")));
    }

    #[test]
    fn sqlite_pragmas_that_read_pass_and_settings_do_not() {
        assert_eq!(check_read_only("PRAGMA table_info(signals)", Dialect::Sqlite), Ok(()));
        assert_eq!(check_read_only("PRAGMA main.page_count", Dialect::Sqlite), Ok(()));
        assert_eq!(
            check_read_only("PRAGMA query_only = OFF", Dialect::Sqlite),
            Err(Refusal::PragmaWrite("query_only".into()))
        );
        assert_eq!(
            check_read_only("PRAGMA journal_mode(DELETE)", Dialect::Sqlite),
            Err(Refusal::PragmaNotRead("journal_mode".into()))
        );
        assert_eq!(
            check_read_only("PRAGMA wal_checkpoint", Dialect::Sqlite),
            Err(Refusal::PragmaNotRead("wal_checkpoint".into()))
        );
        assert_eq!(check_read_only("PRAGMA page_count", Dialect::Postgres), Err(Refusal::NotARead("PRAGMA".into())));
    }

    #[test]
    fn at_load_a_query_passes_when_some_dialect_reads_it() {
        assert_eq!(check_read_only_in_any_dialect("PRAGMA table_info(t)"), Ok(()));
        assert_eq!(check_read_only_in_any_dialect("DROP TABLE t"), Err(Refusal::NotARead("DROP".into())));
    }

    #[test]
    fn the_refusal_says_what_is_wrong_and_what_a_check_may_run() {
        let message = Refusal::NotARead("DROP".to_string()).to_string();
        assert!(message.starts_with("query starts with DROP, which is not a read; a check's query is one SELECT"));
        assert!(message.ends_with("writes belong in [[remediations]]"), "{message}");
    }
}
