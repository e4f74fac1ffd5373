//! CEL expressions of runbooks (`expect`, `warn`, `crit`, `suggest_when`): compiled when the
//! file loads, with the variables they may use checked, and evaluated over a check's result.

use std::sync::{Arc, LazyLock};

use cel::{Context, Env, Program, Value};

/// The standard library plus string helpers (`lowerAscii`, `split`, …) for matching output.
static CEL_ENV: LazyLock<Arc<Env>> = LazyLock::new(|| {
    let mut env = Env::stdlib();
    env.add_extension(cel::extensions::strings).expect("the strings extension declares cleanly");
    Arc::new(env)
});

/// One compiled expression and its source.
#[derive(Clone)]
pub struct Expr {
    source: String,
    program: Arc<Program>,
}

impl std::fmt::Debug for Expr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Expr({})", self.source)
    }
}

impl Expr {
    /// Compiles `source`; any variable it names must be one of `variables`.
    pub fn compile(source: &str, variables: &[&str]) -> Result<Expr, String> {
        let program = CEL_ENV.compile(source).map_err(|errors| {
            let text = errors.to_string();
            format!("invalid CEL expression '{source}': {}", text.lines().next().unwrap_or("").trim())
        })?;
        let references = program.references();
        let unknown: Vec<&str> = references
            .variables()
            .into_iter()
            .filter(|name| !variables.contains(name) && !is_macro_variable(source, name))
            .collect();
        if let Some(name) = unknown.first() {
            return Err(format!("unknown variable '{name}' in '{source}'; available here: {}", variables.join(", ")));
        }
        Ok(Expr { source: source.to_string(), program: Arc::new(program) })
    }

    pub fn source(&self) -> &str {
        &self.source
    }

    /// Evaluates to a bool over `variables` (a JSON object's entries).
    pub fn eval_bool(&self, variables: &serde_json::Map<String, serde_json::Value>) -> Result<bool, String> {
        let mut context = Context::with_env(CEL_ENV.clone());
        for (name, value) in variables {
            context.add_variable_from_value(name.as_str(), json_to_cel(value));
        }
        match self.program.execute(&context) {
            Ok(Value::Bool(result)) => Ok(result),
            Ok(other) => Err(format!("'{}' gave {:?}, not true or false", self.source, other.type_of())),
            Err(error) => Err(format!("'{}' failed: {error}", self.source)),
        }
    }
}

/// Whether `name` is bound by a comprehension macro such as `list.exists(x, x > 1)`.
fn is_macro_variable(source: &str, name: &str) -> bool {
    let pattern = format!(r"\b(all|exists|exists_one|map|filter)\(\s*{}\s*,", regex::escape(name));
    regex::Regex::new(&pattern).is_ok_and(|regex| regex.is_match(source))
}

/// JSON → CEL: integers stay `int` (so `row.depth > 100` compares int with int), other numbers
/// are `double`.
pub fn json_to_cel(value: &serde_json::Value) -> Value {
    match value {
        serde_json::Value::Null => Value::Null,
        serde_json::Value::Bool(flag) => Value::Bool(*flag),
        serde_json::Value::Number(number) => match (number.as_i64(), number.as_u64()) {
            (Some(int), _) => Value::Int(int),
            (None, Some(uint)) => Value::UInt(uint),
            _ => Value::Float(number.as_f64().unwrap_or(f64::NAN)),
        },
        serde_json::Value::String(text) => Value::String(Arc::new(text.clone())),
        serde_json::Value::Array(items) => Value::List(Arc::new(items.iter().map(json_to_cel).collect())),
        serde_json::Value::Object(map) => {
            let entries: std::collections::HashMap<String, Value> =
                map.iter().map(|(key, value)| (key.clone(), json_to_cel(value))).collect();
            Value::from(entries)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn vars(value: serde_json::Value) -> serde_json::Map<String, serde_json::Value> {
        value.as_object().unwrap().clone()
    }

    #[test]
    fn compares_numbers_strings_and_lists() {
        let variables = vars(
            json!({"row": {"depth": 120, "ratio": 0.5}, "status": 200, "body": "OK ready", "checks": {"trade queue": {"status": "warn"}}}),
        );
        let all = ["row", "status", "body", "checks"];
        assert!(Expr::compile("row.depth > 100", &all).unwrap().eval_bool(&variables).unwrap());
        assert!(!Expr::compile("row.depth > 500", &all).unwrap().eval_bool(&variables).unwrap());
        assert!(Expr::compile("row.ratio < 1.0", &all).unwrap().eval_bool(&variables).unwrap());
        assert!(Expr::compile("status == 200 && body.contains('ready')", &all).unwrap().eval_bool(&variables).unwrap());
        assert!(Expr::compile("body.lowerAscii().startsWith('ok')", &all).unwrap().eval_bool(&variables).unwrap());
        assert!(
            Expr::compile("checks['trade queue'].status in ['warn', 'crit']", &all)
                .unwrap()
                .eval_bool(&variables)
                .unwrap()
        );
        let in_macro = Expr::compile("[1, 200].exists(x, x == status)", &all).unwrap();
        assert!(in_macro.eval_bool(&variables).unwrap());
        assert!(Expr::compile("[1].exists(x, y > 1)", &all).is_err());
    }

    #[test]
    fn typos_are_caught_at_compile_time() {
        let error = Expr::compile("rwo.depth > 100", &["row", "rows", "count", "args"]).unwrap_err();
        assert_eq!(error, "unknown variable 'rwo' in 'rwo.depth > 100'; available here: row, rows, count, args");
        let error = Expr::compile("row.depth >", &["row"]).unwrap_err();
        assert!(error.starts_with("invalid CEL expression 'row.depth >'"), "{error}");
    }

    #[test]
    fn evaluation_errors_and_non_bools_are_reported() {
        let variables = vars(json!({"row": {"depth": 1}}));
        let error = Expr::compile("row.dept > 1", &["row"]).unwrap().eval_bool(&variables).unwrap_err();
        assert!(error.contains("dept"), "{error}");
        let error = Expr::compile("row.depth + 1", &["row"]).unwrap().eval_bool(&variables).unwrap_err();
        assert!(error.contains("not true or false"), "{error}");
    }
}
