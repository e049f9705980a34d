//! Executes a parsed template over JSON data with Go's rules: a missing map key is
//! `<no value>`, maps range in key order, truth is "not the zero value".

use crate::funcs;
use crate::parse::{Arg, Node, Pipe};
use crate::{Error, Methods};
use serde_json::Value;

/// A value during execution; `None` is Go's "no value" (a missing map key).
pub(crate) type Val = Option<Value>;

pub(crate) struct State<'a> {
    pub(crate) vars: Vec<(String, Val)>,
    pub(crate) methods: &'a dyn Methods,
    pub(crate) out: String,
}

/// Go's truth: everything but false, 0, nil, "" and empty collections.
pub(crate) fn truth(v: &Val) -> bool {
    match v {
        None | Some(Value::Null) => false,
        Some(Value::Bool(b)) => *b,
        Some(Value::Number(n)) => n.as_f64().is_some_and(|f| f != 0.0),
        Some(Value::String(s)) => !s.is_empty(),
        Some(Value::Array(a)) => !a.is_empty(),
        Some(Value::Object(o)) => !o.is_empty(),
    }
}

/// Go's type name for a JSON value, as its messages print it.
pub(crate) fn type_name(v: &Val) -> &'static str {
    match v {
        None | Some(Value::Null) => "<nil>",
        Some(Value::Bool(_)) => "bool",
        Some(Value::Number(n)) if n.is_f64() => "float64",
        Some(Value::Number(_)) => "int",
        Some(Value::String(_)) => "string",
        Some(Value::Array(_)) => "[]interface {}",
        Some(Value::Object(_)) => "map[string]interface {}",
    }
}

fn exec_error(p: &Pipe, msg: impl std::fmt::Display) -> Error {
    Error::Exec(format!(
        "template: :{}:{}: executing \"\" at <{}>: {msg}",
        p.line, p.col, p.text
    ))
}

impl State<'_> {
    pub(crate) fn walk(&mut self, nodes: &[Node], dot: &Val) -> Result<(), Error> {
        for n in nodes {
            match n {
                Node::Text(t) => self.out.push_str(t),
                Node::Action(p) => {
                    let v = self.pipe(p, dot)?;
                    if p.decl.is_empty() {
                        let s = funcs::print(&v);
                        self.out.push_str(&s);
                    }
                }
                Node::If(p, yes, no) => {
                    let mark = self.vars.len();
                    let v = self.pipe(p, dot)?;
                    let r = self.walk(if truth(&v) { yes } else { no }, dot);
                    self.vars.truncate(mark);
                    r?;
                }
                Node::With(p, yes, no) => {
                    let mark = self.vars.len();
                    let v = self.pipe(p, dot)?;
                    let r = if truth(&v) {
                        self.walk(yes, &v)
                    } else {
                        self.walk(no, dot)
                    };
                    self.vars.truncate(mark);
                    r?;
                }
                Node::Range(p, body, no) => self.range(p, body, no, dot)?,
            }
        }
        Ok(())
    }

    fn range(&mut self, p: &Pipe, body: &[Node], no: &[Node], dot: &Val) -> Result<(), Error> {
        let mark = self.vars.len();
        let mut decl = p.decl.clone();
        let mut p = p.clone();
        p.decl.clear();
        let v = self.pipe(&p, dot)?;
        let items: Vec<(Value, Value)> = match &v {
            None | Some(Value::Null) => Vec::new(),
            Some(Value::Array(a)) => a
                .iter()
                .enumerate()
                .map(|(i, e)| (Value::from(i), e.clone()))
                .collect(),
            // serde_json's maps iterate in key order, as Go's range over a map.
            Some(Value::Object(o)) => o
                .iter()
                .map(|(k, e)| (Value::String(k.clone()), e.clone()))
                .collect(),
            other => {
                return Err(exec_error(
                    &p,
                    format!("range can't iterate over {}", funcs::print(other)),
                ))
            }
        };
        if items.is_empty() {
            let r = self.walk(no, dot);
            self.vars.truncate(mark);
            return r;
        }
        if decl.len() == 1 {
            decl.insert(0, String::new());
        }
        for (k, e) in items {
            let inner = self.vars.len();
            if decl.len() == 2 {
                self.vars.push((decl[0].clone(), Some(k)));
                self.vars.push((decl[1].clone(), Some(e.clone())));
            }
            let r = self.walk(body, &Some(e));
            self.vars.truncate(inner);
            if let Err(e) = r {
                self.vars.truncate(mark);
                return Err(e);
            }
        }
        self.vars.truncate(mark);
        Ok(())
    }

    pub(crate) fn pipe(&mut self, p: &Pipe, dot: &Val) -> Result<Val, Error> {
        let mut last: Option<Val> = None;
        for cmd in &p.cmds {
            last = Some(self.command(p, cmd, dot, last)?);
        }
        let v = last.unwrap_or(None);
        if let Some(name) = p.decl.first() {
            if p.assign {
                match self.vars.iter_mut().rev().find(|(n, _)| n == name) {
                    Some((_, slot)) => *slot = v.clone(),
                    None => return Err(exec_error(p, format!("undefined variable: {name}"))),
                }
            } else {
                self.vars.push((name.clone(), v.clone()));
            }
        }
        Ok(v)
    }

    fn command(
        &mut self,
        p: &Pipe,
        cmd: &[Arg],
        dot: &Val,
        piped: Option<Val>,
    ) -> Result<Val, Error> {
        match &cmd[0] {
            Arg::Func(name) => {
                let mut args = Vec::new();
                for a in &cmd[1..] {
                    args.push(self.operand(p, a, dot)?);
                }
                if let Some(v) = piped {
                    args.push(v);
                }
                funcs::call(name, &args)
                    .map_err(|m| exec_error(p, format!("error calling {name}: {m}")))
            }
            Arg::Field(chain) if cmd.len() > 1 || piped.is_some() => {
                // `.Label "k"`: a method of the data (docker's contexts have a few).
                let Some((name, head)) = chain.split_last() else {
                    return Err(exec_error(p, "can't give argument to non-function ."));
                };
                let recv = self.chain(p, dot.clone(), head)?;
                let mut args = Vec::new();
                for a in &cmd[1..] {
                    args.push(self.operand(p, a, dot)?);
                }
                if let Some(v) = piped {
                    args.push(v);
                }
                let plain: Vec<Value> =
                    args.into_iter().map(|a| a.unwrap_or(Value::Null)).collect();
                match recv
                    .as_ref()
                    .and_then(|r| self.methods.call(r, name, &plain))
                {
                    Some(r) => r.map(Some).map_err(|m| exec_error(p, m)),
                    None => Err(exec_error(
                        p,
                        format!("can't give argument to non-function .{}", chain.join(".")),
                    )),
                }
            }
            _ if cmd.len() > 1 || piped.is_some() => {
                Err(exec_error(p, "can't give argument to non-function"))
            }
            a => self.operand(p, a, dot),
        }
    }

    fn operand(&mut self, p: &Pipe, a: &Arg, dot: &Val) -> Result<Val, Error> {
        match a {
            Arg::Field(chain) => self.chain(p, dot.clone(), chain),
            Arg::Var(name, chain) => {
                let v = if name == "$" {
                    self.vars.first().and_then(|(_, v)| v.clone())
                } else {
                    match self.vars.iter().rev().find(|(n, _)| n == name) {
                        Some((_, v)) => v.clone(),
                        None => return Err(exec_error(p, format!("undefined variable: {name}"))),
                    }
                };
                self.chain(p, v, chain)
            }
            Arg::Str(s) => Ok(Some(Value::String(s.clone()))),
            Arg::Num(n) => Ok(Some(Value::Number(n.clone()))),
            Arg::Bool(b) => Ok(Some(Value::Bool(*b))),
            Arg::Nil => Ok(Some(Value::Null)),
            Arg::Func(name) => funcs::call(name, &[])
                .map_err(|m| exec_error(p, format!("error calling {name}: {m}"))),
            Arg::Sub(sub, chain) => {
                let v = self.pipe(sub, dot)?;
                self.chain(p, v, chain)
            }
        }
    }

    /// `.A.B` from `v`: a missing key (or nil on the way) gives no value; a field of a
    /// string, number or list is an error, as in Go.
    fn chain(&self, p: &Pipe, v: Val, chain: &[String]) -> Result<Val, Error> {
        let mut v = v;
        for name in chain {
            v = match v {
                None | Some(Value::Null) => None,
                Some(Value::Object(mut o)) => match o.remove(name) {
                    Some(x) => Some(x),
                    None => match self.methods.call(&Value::Object(o), name, &[]) {
                        Some(r) => Some(r.map_err(|m| exec_error(p, m))?),
                        None => None,
                    },
                },
                other => {
                    return Err(exec_error(
                        p,
                        format!("can't evaluate field {name} in type {}", type_name(&other)),
                    ))
                }
            };
        }
        Ok(v)
    }
}
