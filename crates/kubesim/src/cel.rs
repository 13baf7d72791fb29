//! A small subset of CEL, enough for the `x-kubernetes-validations` rules CRDs commonly carry
//! (immutability `self.x == oldSelf.x`, `has(self.x)`, `size()`, comparisons, string helpers,
//! `all`/`exists` over lists). Rules outside the subset fail to *parse*, so the CRD is rejected
//! at creation instead of the rule being silently skipped.

use serde_json::{Number, Value};
use std::collections::HashMap;

/// A parsed expression.
#[derive(Debug, Clone)]
pub(crate) enum Expr {
    Lit(Value),
    Var(String),
    List(Vec<Expr>),
    Field(Box<Expr>, String),
    Index(Box<Expr>, Box<Expr>),
    Has(Box<Expr>, String),
    Not(Box<Expr>),
    Neg(Box<Expr>),
    Bin(Box<Expr>, Op, Box<Expr>),
    Cond(Box<Expr>, Box<Expr>, Box<Expr>),
    /// Global function `f(args)`.
    Call(String, Vec<Expr>),
    /// Receiver-style function `target.f(args)`.
    Method(Box<Expr>, String, Vec<Expr>),
    /// `target.all(v, pred)` style macros.
    Macro(Box<Expr>, String, String, Box<Expr>),
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Op {
    Or,
    And,
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
    In,
    Add,
    Sub,
    Mul,
    Div,
    Rem,
}

const GLOBAL_FUNCTIONS: &[&str] = &["size", "int", "double", "string"];
const METHODS: &[&str] = &[
    "size",
    "startsWith",
    "endsWith",
    "contains",
    "matches",
    "lowerAscii",
    "upperAscii",
];
const MACROS: &[&str] = &["all", "exists", "exists_one", "filter", "map"];

/// The functions and operators this evaluator understands, for error messages and docs.
pub const SUPPORTED: &str = "literals, self/oldSelf, field access, [index], has(), size(), int(), double(), string(), \
     ==, !=, <, <=, >, >=, in, &&, ||, !, ?:, + - * / %, .startsWith/.endsWith/.contains/.matches/.lowerAscii/.upperAscii, \
     .all/.exists/.exists_one/.filter/.map";

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Ident(String),
    Int(i64),
    Float(f64),
    Str(String),
    Sym(&'static str),
}

fn lex(src: &str) -> Result<Vec<Tok>, String> {
    let chars: Vec<char> = src.chars().collect();
    let mut i = 0;
    let mut out = Vec::new();
    const SYMS: &[&str] = &[
        "==", "!=", "<=", ">=", "&&", "||", "<", ">", "!", "(", ")", "[", "]", ".", ",", "?", ":",
        "+", "-", "*", "/", "%",
    ];
    while i < chars.len() {
        let c = chars[i];
        if c.is_whitespace() {
            i += 1;
            continue;
        }
        if c.is_ascii_alphabetic() || c == '_' {
            let start = i;
            while i < chars.len() && (chars[i].is_ascii_alphanumeric() || chars[i] == '_') {
                i += 1;
            }
            out.push(Tok::Ident(chars[start..i].iter().collect()));
            continue;
        }
        if c.is_ascii_digit() {
            let start = i;
            while i < chars.len() && (chars[i].is_ascii_digit() || chars[i] == '.') {
                i += 1;
            }
            let text: String = chars[start..i].iter().collect();
            if text.contains('.') {
                out.push(Tok::Float(
                    text.parse().map_err(|_| format!("bad number {text}"))?,
                ));
            } else {
                out.push(Tok::Int(
                    text.parse().map_err(|_| format!("bad number {text}"))?,
                ));
            }
            // CEL unsigned suffix
            if i < chars.len() && chars[i] == 'u' {
                i += 1;
            }
            continue;
        }
        if c == '\'' || c == '"' {
            let quote = c;
            i += 1;
            let mut s = String::new();
            loop {
                match chars.get(i) {
                    None => return Err("unterminated string literal".into()),
                    Some(&ch) if ch == quote => {
                        i += 1;
                        break;
                    }
                    Some('\\') => {
                        let esc = chars.get(i + 1).ok_or("unterminated escape")?;
                        s.push(match esc {
                            'n' => '\n',
                            't' => '\t',
                            other => *other,
                        });
                        i += 2;
                    }
                    Some(&ch) => {
                        s.push(ch);
                        i += 1;
                    }
                }
            }
            out.push(Tok::Str(s));
            continue;
        }
        let rest: String = chars[i..chars.len().min(i + 2)].iter().collect();
        match SYMS.iter().find(|s| rest.starts_with(**s)) {
            Some(s) => {
                out.push(Tok::Sym(s));
                i += s.len();
            }
            None => return Err(format!("unexpected character {c:?}")),
        }
    }
    Ok(out)
}

struct Parser {
    toks: Vec<Tok>,
    pos: usize,
}

/// Parses a rule; an error names the unsupported construct.
pub(crate) fn parse(src: &str) -> Result<Expr, String> {
    let mut p = Parser {
        toks: lex(src)?,
        pos: 0,
    };
    let e = p.expr()?;
    if p.pos != p.toks.len() {
        return Err(format!("unexpected token {:?}", p.toks[p.pos]));
    }
    Ok(e)
}

impl Parser {
    fn peek_sym(&self, s: &str) -> bool {
        matches!(self.toks.get(self.pos), Some(Tok::Sym(x)) if *x == s)
    }
    fn eat_sym(&mut self, s: &str) -> bool {
        if self.peek_sym(s) {
            self.pos += 1;
            true
        } else {
            false
        }
    }
    fn expect(&mut self, s: &str) -> Result<(), String> {
        if self.eat_sym(s) {
            Ok(())
        } else {
            Err(format!("expected {s:?}"))
        }
    }
    fn ident(&mut self) -> Result<String, String> {
        match self.toks.get(self.pos) {
            Some(Tok::Ident(s)) => {
                self.pos += 1;
                Ok(s.clone())
            }
            other => Err(format!("expected identifier, found {other:?}")),
        }
    }

    fn expr(&mut self) -> Result<Expr, String> {
        let c = self.binary(0)?;
        if self.eat_sym("?") {
            let a = self.expr()?;
            self.expect(":")?;
            let b = self.expr()?;
            return Ok(Expr::Cond(Box::new(c), Box::new(a), Box::new(b)));
        }
        Ok(c)
    }

    fn binary(&mut self, level: usize) -> Result<Expr, String> {
        const LEVELS: &[&[(&str, Op)]] = &[
            &[("||", Op::Or)],
            &[("&&", Op::And)],
            &[
                ("==", Op::Eq),
                ("!=", Op::Ne),
                ("<=", Op::Le),
                (">=", Op::Ge),
                ("<", Op::Lt),
                (">", Op::Gt),
            ],
            &[("+", Op::Add), ("-", Op::Sub)],
            &[("*", Op::Mul), ("/", Op::Div), ("%", Op::Rem)],
        ];
        if level == LEVELS.len() {
            return self.unary();
        }
        let mut lhs = self.binary(level + 1)?;
        loop {
            let mut matched = None;
            for (sym, op) in LEVELS[level] {
                if self.eat_sym(sym) {
                    matched = Some(*op);
                    break;
                }
            }
            if matched.is_none()
                && level == 2
                && matches!(self.toks.get(self.pos), Some(Tok::Ident(s)) if s == "in")
            {
                self.pos += 1;
                matched = Some(Op::In);
            }
            match matched {
                Some(op) => {
                    let rhs = self.binary(level + 1)?;
                    lhs = Expr::Bin(Box::new(lhs), op, Box::new(rhs));
                }
                None => return Ok(lhs),
            }
        }
    }

    fn unary(&mut self) -> Result<Expr, String> {
        if self.eat_sym("!") {
            return Ok(Expr::Not(Box::new(self.unary()?)));
        }
        if self.eat_sym("-") {
            return Ok(Expr::Neg(Box::new(self.unary()?)));
        }
        self.member()
    }

    fn args(&mut self) -> Result<Vec<Expr>, String> {
        let mut args = Vec::new();
        if self.eat_sym(")") {
            return Ok(args);
        }
        loop {
            args.push(self.expr()?);
            if self.eat_sym(")") {
                return Ok(args);
            }
            self.expect(",")?;
        }
    }

    fn member(&mut self) -> Result<Expr, String> {
        let mut e = self.primary()?;
        loop {
            if self.eat_sym(".") {
                let name = self.ident()?;
                if self.eat_sym("(") {
                    if MACROS.contains(&name.as_str()) {
                        let var = self.ident()?;
                        self.expect(",")?;
                        let body = self.expr()?;
                        self.expect(")")?;
                        e = Expr::Macro(Box::new(e), name, var, Box::new(body));
                    } else if METHODS.contains(&name.as_str()) {
                        let args = self.args()?;
                        e = Expr::Method(Box::new(e), name, args);
                    } else {
                        return Err(format!("unsupported function .{name}()"));
                    }
                } else {
                    e = Expr::Field(Box::new(e), name);
                }
            } else if self.eat_sym("[") {
                let idx = self.expr()?;
                self.expect("]")?;
                e = Expr::Index(Box::new(e), Box::new(idx));
            } else {
                return Ok(e);
            }
        }
    }

    fn primary(&mut self) -> Result<Expr, String> {
        let tok = self.toks.get(self.pos).cloned().ok_or("unexpected end")?;
        self.pos += 1;
        match tok {
            Tok::Int(i) => Ok(Expr::Lit(Value::from(i))),
            Tok::Float(f) => Ok(Expr::Lit(
                Number::from_f64(f).map(Value::Number).ok_or("bad float")?,
            )),
            Tok::Str(s) => Ok(Expr::Lit(Value::String(s))),
            Tok::Sym("(") => {
                let e = self.expr()?;
                self.expect(")")?;
                Ok(e)
            }
            Tok::Sym("[") => {
                let mut items = Vec::new();
                if !self.eat_sym("]") {
                    loop {
                        items.push(self.expr()?);
                        if self.eat_sym("]") {
                            break;
                        }
                        self.expect(",")?;
                    }
                }
                Ok(Expr::List(items))
            }
            Tok::Ident(name) => match name.as_str() {
                "true" => Ok(Expr::Lit(Value::Bool(true))),
                "false" => Ok(Expr::Lit(Value::Bool(false))),
                "null" => Ok(Expr::Lit(Value::Null)),
                "has" => {
                    self.expect("(")?;
                    let target = self.member()?;
                    self.expect(")")?;
                    match target {
                        Expr::Field(base, field) => Ok(Expr::Has(base, field)),
                        _ => Err("has() needs a field selection like has(self.x)".into()),
                    }
                }
                _ if self.peek_sym("(") => {
                    self.pos += 1;
                    if !GLOBAL_FUNCTIONS.contains(&name.as_str()) {
                        return Err(format!("unsupported function {name}()"));
                    }
                    Ok(Expr::Call(name, self.args()?))
                }
                _ => Ok(Expr::Var(name)),
            },
            Tok::Sym(s) => Err(format!("unexpected {s:?}")),
        }
    }
}

/// Whether the expression mentions `oldSelf` (a transition rule, only run on update).
pub(crate) fn uses_old_self(e: &Expr) -> bool {
    match e {
        Expr::Var(v) => v == "oldSelf",
        Expr::Lit(_) => false,
        Expr::List(xs) | Expr::Call(_, xs) => xs.iter().any(uses_old_self),
        Expr::Field(b, _) | Expr::Has(b, _) | Expr::Not(b) | Expr::Neg(b) => uses_old_self(b),
        Expr::Index(a, b) | Expr::Bin(a, _, b) | Expr::Macro(a, _, _, b) => {
            uses_old_self(a) || uses_old_self(b)
        }
        Expr::Cond(a, b, c) => uses_old_self(a) || uses_old_self(b) || uses_old_self(c),
        Expr::Method(t, _, xs) => uses_old_self(t) || xs.iter().any(uses_old_self),
    }
}

/// Variables visible to a rule.
pub(crate) type Env = HashMap<String, Value>;

/// Evaluates a rule to a value; errors read like CEL's ("no such key: x").
pub(crate) fn eval(e: &Expr, env: &Env) -> Result<Value, String> {
    match e {
        Expr::Lit(v) => Ok(v.clone()),
        Expr::Var(name) => env
            .get(name)
            .cloned()
            .ok_or_else(|| format!("undeclared reference to '{name}'")),
        Expr::List(items) => Ok(Value::Array(
            items
                .iter()
                .map(|i| eval(i, env))
                .collect::<Result<_, _>>()?,
        )),
        Expr::Field(base, field) => match eval(base, env)? {
            Value::Object(m) => m
                .get(field)
                .cloned()
                .ok_or_else(|| format!("no such key: {field}")),
            other => Err(format!(
                "cannot select field '{field}' from {}",
                type_name(&other)
            )),
        },
        Expr::Index(base, idx) => {
            let b = eval(base, env)?;
            let i = eval(idx, env)?;
            match (&b, &i) {
                (Value::Array(a), Value::Number(n)) => n
                    .as_u64()
                    .and_then(|n| a.get(n as usize))
                    .cloned()
                    .ok_or_else(|| "index out of bounds".into()),
                (Value::Object(m), Value::String(k)) => {
                    m.get(k).cloned().ok_or_else(|| format!("no such key: {k}"))
                }
                _ => Err("invalid index".into()),
            }
        }
        Expr::Has(base, field) => match eval(base, env)? {
            Value::Object(m) => Ok(Value::Bool(m.contains_key(field))),
            _ => Ok(Value::Bool(false)),
        },
        Expr::Not(x) => Ok(Value::Bool(!truthy(&eval(x, env)?)?)),
        Expr::Neg(x) => match eval(x, env)? {
            Value::Number(n) => match n.as_i64() {
                Some(i) => Ok(Value::from(-i)),
                None => Ok(num(-n.as_f64().unwrap_or(0.0))),
            },
            other => Err(format!("no such overload: -{}", type_name(&other))),
        },
        Expr::Cond(c, a, b) => {
            if truthy(&eval(c, env)?)? {
                eval(a, env)
            } else {
                eval(b, env)
            }
        }
        Expr::Bin(a, Op::And, b) => {
            // CEL's && is commutative over errors; short-circuit on a false left side.
            let l = eval(a, env);
            if let Ok(Value::Bool(false)) = l {
                return Ok(Value::Bool(false));
            }
            let r = eval(b, env);
            match (l, r) {
                (_, Ok(Value::Bool(false))) => Ok(Value::Bool(false)),
                (Ok(l), Ok(r)) => Ok(Value::Bool(truthy(&l)? && truthy(&r)?)),
                (Err(e), _) | (_, Err(e)) => Err(e),
            }
        }
        Expr::Bin(a, Op::Or, b) => {
            let l = eval(a, env);
            if let Ok(Value::Bool(true)) = l {
                return Ok(Value::Bool(true));
            }
            let r = eval(b, env);
            match (l, r) {
                (_, Ok(Value::Bool(true))) => Ok(Value::Bool(true)),
                (Ok(l), Ok(r)) => Ok(Value::Bool(truthy(&l)? || truthy(&r)?)),
                (Err(e), _) | (_, Err(e)) => Err(e),
            }
        }
        Expr::Bin(a, op, b) => binary(*op, eval(a, env)?, eval(b, env)?),
        Expr::Call(f, args) => {
            let vals: Vec<Value> = args
                .iter()
                .map(|a| eval(a, env))
                .collect::<Result<_, _>>()?;
            match (f.as_str(), vals.as_slice()) {
                ("size", [v]) => size(v),
                ("int", [Value::Number(n)]) => Ok(Value::from(
                    n.as_i64().unwrap_or(n.as_f64().unwrap_or(0.0) as i64),
                )),
                ("int", [Value::String(s)]) => s
                    .parse::<i64>()
                    .map(Value::from)
                    .map_err(|_| format!("cannot convert {s:?} to int")),
                ("double", [Value::Number(n)]) => Ok(num(n.as_f64().unwrap_or(0.0))),
                ("string", [v]) => Ok(Value::String(match v {
                    Value::String(s) => s.clone(),
                    other => other.to_string(),
                })),
                _ => Err(format!("no matching overload for {f}()")),
            }
        }
        Expr::Method(target, f, args) => {
            let t = eval(target, env)?;
            let vals: Vec<Value> = args
                .iter()
                .map(|a| eval(a, env))
                .collect::<Result<_, _>>()?;
            match (f.as_str(), &t, vals.as_slice()) {
                ("size", v, []) => size(v),
                ("startsWith", Value::String(s), [Value::String(p)]) => {
                    Ok(Value::Bool(s.starts_with(p.as_str())))
                }
                ("endsWith", Value::String(s), [Value::String(p)]) => {
                    Ok(Value::Bool(s.ends_with(p.as_str())))
                }
                ("contains", Value::String(s), [Value::String(p)]) => {
                    Ok(Value::Bool(s.contains(p.as_str())))
                }
                ("matches", Value::String(s), [Value::String(p)]) => regex::Regex::new(p)
                    .map(|re| Value::Bool(re.is_match(s)))
                    .map_err(|e| format!("invalid regex: {e}")),
                ("lowerAscii", Value::String(s), []) => Ok(Value::String(s.to_ascii_lowercase())),
                ("upperAscii", Value::String(s), []) => Ok(Value::String(s.to_ascii_uppercase())),
                _ => Err(format!("no matching overload for {}.{f}()", type_name(&t))),
            }
        }
        Expr::Macro(target, name, var, body) => {
            let items: Vec<Value> = match eval(target, env)? {
                Value::Array(a) => a,
                Value::Object(m) => m.keys().map(|k| Value::String(k.clone())).collect(),
                other => return Err(format!("cannot iterate over {}", type_name(&other))),
            };
            let mut scope = env.clone();
            let mut run = |item: &Value| {
                scope.insert(var.clone(), item.clone());
                eval(body, &scope)
            };
            match name.as_str() {
                "all" => {
                    for i in &items {
                        if !truthy(&run(i)?)? {
                            return Ok(Value::Bool(false));
                        }
                    }
                    Ok(Value::Bool(true))
                }
                "exists" => {
                    for i in &items {
                        if truthy(&run(i)?)? {
                            return Ok(Value::Bool(true));
                        }
                    }
                    Ok(Value::Bool(false))
                }
                "exists_one" => {
                    let mut n = 0;
                    for i in &items {
                        if truthy(&run(i)?)? {
                            n += 1;
                        }
                    }
                    Ok(Value::Bool(n == 1))
                }
                "filter" => {
                    let mut out = Vec::new();
                    for i in &items {
                        if truthy(&run(i)?)? {
                            out.push(i.clone());
                        }
                    }
                    Ok(Value::Array(out))
                }
                _ => Ok(Value::Array(
                    items.iter().map(&mut run).collect::<Result<_, _>>()?,
                )),
            }
        }
    }
}

fn num(f: f64) -> Value {
    Number::from_f64(f)
        .map(Value::Number)
        .unwrap_or(Value::Null)
}

fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "bool",
        Value::Number(n) if n.is_f64() => "double",
        Value::Number(_) => "int",
        Value::String(_) => "string",
        Value::Array(_) => "list",
        Value::Object(_) => "map",
    }
}

fn truthy(v: &Value) -> Result<bool, String> {
    match v {
        Value::Bool(b) => Ok(*b),
        other => Err(format!("expected bool, got {}", type_name(other))),
    }
}

fn size(v: &Value) -> Result<Value, String> {
    match v {
        Value::String(s) => Ok(Value::from(s.chars().count() as i64)),
        Value::Array(a) => Ok(Value::from(a.len() as i64)),
        Value::Object(m) => Ok(Value::from(m.len() as i64)),
        other => Err(format!(
            "no matching overload for size({})",
            type_name(other)
        )),
    }
}

fn values_equal(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => match (x.as_i64(), y.as_i64()) {
            (Some(x), Some(y)) => x == y,
            _ => x.as_f64() == y.as_f64(),
        },
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(a, b)| values_equal(a, b))
        }
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len()
                && x.iter()
                    .all(|(k, v)| y.get(k).is_some_and(|w| values_equal(v, w)))
        }
        _ => a == b,
    }
}

fn binary(op: Op, a: Value, b: Value) -> Result<Value, String> {
    use std::cmp::Ordering;
    let ord = |a: &Value, b: &Value| -> Result<Ordering, String> {
        match (a, b) {
            (Value::Number(x), Value::Number(y)) => match (x.as_i64(), y.as_i64()) {
                (Some(x), Some(y)) => Ok(x.cmp(&y)),
                _ => x
                    .as_f64()
                    .partial_cmp(&y.as_f64())
                    .ok_or_else(|| "NaN comparison".to_string()),
            },
            (Value::String(x), Value::String(y)) => Ok(x.cmp(y)),
            (Value::Bool(x), Value::Bool(y)) => Ok(x.cmp(y)),
            _ => Err(format!(
                "no such overload: {} < {}",
                type_name(a),
                type_name(b)
            )),
        }
    };
    match op {
        Op::Eq => Ok(Value::Bool(values_equal(&a, &b))),
        Op::Ne => Ok(Value::Bool(!values_equal(&a, &b))),
        Op::Lt => Ok(Value::Bool(ord(&a, &b)? == Ordering::Less)),
        Op::Le => Ok(Value::Bool(ord(&a, &b)? != Ordering::Greater)),
        Op::Gt => Ok(Value::Bool(ord(&a, &b)? == Ordering::Greater)),
        Op::Ge => Ok(Value::Bool(ord(&a, &b)? != Ordering::Less)),
        Op::In => match &b {
            Value::Array(items) => Ok(Value::Bool(items.iter().any(|i| values_equal(i, &a)))),
            Value::Object(m) => match &a {
                Value::String(k) => Ok(Value::Bool(m.contains_key(k))),
                _ => Ok(Value::Bool(false)),
            },
            other => Err(format!("no such overload: in {}", type_name(other))),
        },
        Op::Add => match (&a, &b) {
            (Value::String(x), Value::String(y)) => Ok(Value::String(format!("{x}{y}"))),
            (Value::Array(x), Value::Array(y)) => {
                Ok(Value::Array(x.iter().chain(y.iter()).cloned().collect()))
            }
            _ => arith(op, &a, &b),
        },
        Op::Sub | Op::Mul | Op::Div | Op::Rem => arith(op, &a, &b),
        Op::And | Op::Or => Err("unreachable: logical operators short-circuit".into()),
    }
}

fn arith(op: Op, a: &Value, b: &Value) -> Result<Value, String> {
    let (Value::Number(x), Value::Number(y)) = (a, b) else {
        return Err(format!(
            "no such overload for arithmetic on {} and {}",
            type_name(a),
            type_name(b)
        ));
    };
    if let (Some(x), Some(y)) = (x.as_i64(), y.as_i64()) {
        let r = match op {
            Op::Add => x.checked_add(y),
            Op::Sub => x.checked_sub(y),
            Op::Mul => x.checked_mul(y),
            Op::Div => x.checked_div(y),
            _ => x.checked_rem(y),
        };
        return r
            .map(Value::from)
            .ok_or_else(|| "integer overflow or division by zero".into());
    }
    let (x, y) = (x.as_f64().unwrap_or(0.0), y.as_f64().unwrap_or(0.0));
    Ok(num(match op {
        Op::Add => x + y,
        Op::Sub => x - y,
        Op::Mul => x * y,
        Op::Div => x / y,
        _ => x % y,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn run(rule: &str, this: Value, old: Option<Value>) -> Result<Value, String> {
        let mut env = Env::new();
        env.insert("self".into(), this);
        if let Some(o) = old {
            env.insert("oldSelf".into(), o);
        }
        eval(&parse(rule)?, &env)
    }

    #[test]
    fn immutability_rule_compares_old_and_new() {
        let rule = "self.instanceId == oldSelf.instanceId";
        assert_eq!(
            run(
                rule,
                json!({"instanceId": "i-1"}),
                Some(json!({"instanceId": "i-1"}))
            ),
            Ok(json!(true))
        );
        assert_eq!(
            run(
                rule,
                json!({"instanceId": "i-2"}),
                Some(json!({"instanceId": "i-1"}))
            ),
            Ok(json!(false))
        );
        assert!(uses_old_self(&parse(rule).unwrap()));
    }

    #[test]
    fn has_size_and_comparisons() {
        let obj = json!({"a": "xyz", "n": 3, "l": [1, 2]});
        assert_eq!(
            run("has(self.a) && !has(self.b)", obj.clone(), None),
            Ok(json!(true))
        );
        assert_eq!(
            run(
                "size(self.a) == 3 && self.l.size() < self.n",
                obj.clone(),
                None
            ),
            Ok(json!(true))
        );
        assert_eq!(
            run(
                "self.n >= 3 ? self.a.startsWith('x') : false",
                obj.clone(),
                None
            ),
            Ok(json!(true))
        );
        assert_eq!(
            run(
                "self.l.all(x, x > 0) && self.l.exists(x, x == 2)",
                obj.clone(),
                None
            ),
            Ok(json!(true))
        );
        assert_eq!(
            run("'xyz' in ['a', self.a]", obj.clone(), None),
            Ok(json!(true))
        );
        assert_eq!(
            run("!has(self.b) || self.b > 1", obj, None),
            Ok(json!(true))
        );
    }

    #[test]
    fn missing_key_is_an_error_and_unknown_functions_do_not_parse() {
        assert!(run("self.b == 1", json!({}), None).is_err());
        assert!(parse("self.x.quantity() > 1").is_err());
        assert!(parse("duration(self.x) > duration('1s')").is_err());
    }
}
