//! The parse tree as the walkers read it: a generic tree of the protobuf nodes.
//!
//! It has the shape `serde_json::to_value` gives the protobuf structs (a `Node` is
//! `{"node": {"SelectStmt": {...}}}`, enums are their numbers), so the walkers can
//! visit every node kind without a line per kind. It is built by its own serde
//! Serializer rather than as `serde_json::Value`: field names stay `&'static str`
//! (no allocation per field) and objects are small vectors rather than B-trees. On
//! pgbench's statements the conversion took a quarter of a cache miss as JSON values.
//! A node's fields carry its kind, typed (see `node.rs`).

use std::cell::Cell;
use std::fmt;

use serde::ser::{self, Serialize};

use super::node_kind::NodeKind;

/// A value of the tree.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Null,
    Bool(bool),
    Int(i64),
    Float(f64),
    String(String),
    Array(Vec<Value>),
    Object(Map),
}

/// A struct's fields (or an enum variant: one entry), in declaration order.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Map {
    fields: Vec<(&'static str, Value)>,
    /// What node these are the fields of (`Other`: not a node's).
    kind: NodeKind,
}

impl Map {
    fn with_capacity(n: usize) -> Map {
        Map {
            fields: Vec::with_capacity(n),
            kind: NodeKind::Other,
        }
    }

    pub fn kind(&self) -> NodeKind {
        self.kind
    }

    pub fn get(&self, key: &str) -> Option<&Value> {
        self.fields.iter().find(|(k, _)| *k == key).map(|(_, v)| v)
    }

    pub fn contains_key(&self, key: &str) -> bool {
        self.fields.iter().any(|(k, _)| *k == key)
    }

    pub fn iter(&self) -> impl Iterator<Item = (&'static str, &Value)> {
        self.fields.iter().map(|(k, v)| (*k, v))
    }

    pub fn keys(&self) -> impl Iterator<Item = &'static str> + '_ {
        self.fields.iter().map(|(k, _)| *k)
    }

    pub fn is_empty(&self) -> bool {
        self.fields.is_empty()
    }

    pub fn len(&self) -> usize {
        self.fields.len()
    }
}

impl<'a> IntoIterator for &'a Map {
    type Item = (&'static str, &'a Value);
    type IntoIter = std::iter::Map<
        std::slice::Iter<'a, (&'static str, Value)>,
        fn(&'a (&'static str, Value)) -> (&'static str, &'a Value),
    >;
    fn into_iter(self) -> Self::IntoIter {
        self.fields.iter().map(|(k, v)| (*k, v))
    }
}

impl Value {
    pub fn get(&self, key: &str) -> Option<&Value> {
        self.as_object()?.get(key)
    }

    pub fn as_object(&self) -> Option<&Map> {
        match self {
            Value::Object(m) => Some(m),
            _ => None,
        }
    }

    pub fn as_array(&self) -> Option<&Vec<Value>> {
        match self {
            Value::Array(a) => Some(a),
            _ => None,
        }
    }

    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::String(s) => Some(s),
            _ => None,
        }
    }

    pub fn as_bool(&self) -> Option<bool> {
        match self {
            Value::Bool(b) => Some(*b),
            _ => None,
        }
    }

    pub fn as_i64(&self) -> Option<i64> {
        match self {
            Value::Int(i) => Some(*i),
            _ => None,
        }
    }

    pub fn is_null(&self) -> bool {
        matches!(self, Value::Null)
    }
}

/// Build the tree of any protobuf value.
pub fn to_tree<T: Serialize + ?Sized>(v: &T) -> Result<Value, Error> {
    Ok(to_tree_measured(v)?.0)
}

/// [`to_tree`], with how many values deep the tree goes. A tree kept beyond the parse
/// threads (in a cache) may be dropped on a small stack, and dropping recurses as deep
/// as the tree: the depth says whether that is safe.
pub fn to_tree_measured<T: Serialize + ?Sized>(v: &T) -> Result<(Value, usize), Error> {
    let deepest = Cell::new(0);
    let tree = v.serialize(Tree {
        depth: 0,
        deepest: &deepest,
    })?;
    Ok((tree, deepest.get()))
}

/// What cannot be in a parse tree (maps with non-string keys and the like).
#[derive(Debug)]
pub struct Error(String);

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Error {}

impl ser::Error for Error {
    fn custom<T: fmt::Display>(msg: T) -> Error {
        Error(msg.to_string())
    }
}

/// The serializer, at some depth of the tree; `deepest` is the tree's depth so far.
#[derive(Clone, Copy)]
struct Tree<'d> {
    depth: usize,
    deepest: &'d Cell<usize>,
}

impl<'d> Tree<'d> {
    /// The serializer for a value one level further down.
    fn child(self) -> Tree<'d> {
        let depth = self.depth + 1;
        if depth > self.deepest.get() {
            self.deepest.set(depth);
        }
        Tree {
            depth,
            deepest: self.deepest,
        }
    }
}

fn unsupported(what: &str) -> Error {
    Error(format!("a parse tree does not hold {what}"))
}

/// Array and struct builders (and an enum variant's, wrapped when done).
pub struct Seq<'d>(Vec<Value>, Option<&'static str>, Tree<'d>);
pub struct Fields<'d>(Map, Option<&'static str>, Tree<'d>);

fn tagged(variant: Option<&'static str>, v: Value) -> Value {
    match variant {
        Some(name) => Value::Object(Map {
            fields: vec![(name, v)],
            kind: NodeKind::Other,
        }),
        None => v,
    }
}

impl<'d> ser::Serializer for Tree<'d> {
    type Ok = Value;
    type Error = Error;
    type SerializeSeq = Seq<'d>;
    type SerializeTuple = Seq<'d>;
    type SerializeTupleStruct = Seq<'d>;
    type SerializeTupleVariant = Seq<'d>;
    type SerializeMap = ser::Impossible<Value, Error>;
    type SerializeStruct = Fields<'d>;
    type SerializeStructVariant = Fields<'d>;

    fn serialize_bool(self, v: bool) -> Result<Value, Error> {
        Ok(Value::Bool(v))
    }
    fn serialize_i8(self, v: i8) -> Result<Value, Error> {
        Ok(Value::Int(v.into()))
    }
    fn serialize_i16(self, v: i16) -> Result<Value, Error> {
        Ok(Value::Int(v.into()))
    }
    fn serialize_i32(self, v: i32) -> Result<Value, Error> {
        Ok(Value::Int(v.into()))
    }
    fn serialize_i64(self, v: i64) -> Result<Value, Error> {
        Ok(Value::Int(v))
    }
    fn serialize_u8(self, v: u8) -> Result<Value, Error> {
        Ok(Value::Int(v.into()))
    }
    fn serialize_u16(self, v: u16) -> Result<Value, Error> {
        Ok(Value::Int(v.into()))
    }
    fn serialize_u32(self, v: u32) -> Result<Value, Error> {
        Ok(Value::Int(v.into()))
    }
    fn serialize_u64(self, v: u64) -> Result<Value, Error> {
        // OIDs and query ids: beyond i64 they are only ever compared, never computed.
        Ok(Value::Int(v as i64))
    }
    fn serialize_f32(self, v: f32) -> Result<Value, Error> {
        Ok(Value::Float(v.into()))
    }
    fn serialize_f64(self, v: f64) -> Result<Value, Error> {
        Ok(Value::Float(v))
    }
    fn serialize_char(self, v: char) -> Result<Value, Error> {
        Ok(Value::String(v.to_string()))
    }
    fn serialize_str(self, v: &str) -> Result<Value, Error> {
        Ok(Value::String(v.to_owned()))
    }
    fn serialize_bytes(self, v: &[u8]) -> Result<Value, Error> {
        Ok(Value::Array(
            v.iter().map(|b| Value::Int((*b).into())).collect(),
        ))
    }
    fn serialize_none(self) -> Result<Value, Error> {
        Ok(Value::Null)
    }
    fn serialize_some<T: Serialize + ?Sized>(self, v: &T) -> Result<Value, Error> {
        v.serialize(self)
    }
    fn serialize_unit(self) -> Result<Value, Error> {
        Ok(Value::Null)
    }
    fn serialize_unit_struct(self, _: &'static str) -> Result<Value, Error> {
        Ok(Value::Null)
    }
    fn serialize_unit_variant(
        self,
        _: &'static str,
        _: u32,
        variant: &'static str,
    ) -> Result<Value, Error> {
        Ok(Value::String(variant.to_owned()))
    }
    fn serialize_newtype_struct<T: Serialize + ?Sized>(
        self,
        _: &'static str,
        v: &T,
    ) -> Result<Value, Error> {
        v.serialize(self)
    }
    fn serialize_newtype_variant<T: Serialize + ?Sized>(
        self,
        name: &'static str,
        index: u32,
        variant: &'static str,
        v: &T,
    ) -> Result<Value, Error> {
        let mut inner = v.serialize(self.child())?;
        // pg_query's node enum: its variant's fields know their kind.
        if name == "Node" {
            if let Value::Object(fields) = &mut inner {
                fields.kind = NodeKind::from_variant(index, variant);
            }
        }
        Ok(tagged(Some(variant), inner))
    }
    fn serialize_seq(self, len: Option<usize>) -> Result<Seq<'d>, Error> {
        Ok(Seq(
            Vec::with_capacity(len.unwrap_or(0)),
            None,
            self.child(),
        ))
    }
    fn serialize_tuple(self, len: usize) -> Result<Seq<'d>, Error> {
        Ok(Seq(Vec::with_capacity(len), None, self.child()))
    }
    fn serialize_tuple_struct(self, _: &'static str, len: usize) -> Result<Seq<'d>, Error> {
        Ok(Seq(Vec::with_capacity(len), None, self.child()))
    }
    fn serialize_tuple_variant(
        self,
        _: &'static str,
        _: u32,
        variant: &'static str,
        len: usize,
    ) -> Result<Seq<'d>, Error> {
        Ok(Seq(Vec::with_capacity(len), Some(variant), self.child()))
    }
    fn serialize_map(self, _: Option<usize>) -> Result<Self::SerializeMap, Error> {
        Err(unsupported("a map"))
    }
    fn serialize_struct(self, _: &'static str, len: usize) -> Result<Fields<'d>, Error> {
        Ok(Fields(Map::with_capacity(len), None, self.child()))
    }
    fn serialize_struct_variant(
        self,
        _: &'static str,
        _: u32,
        variant: &'static str,
        len: usize,
    ) -> Result<Fields<'d>, Error> {
        Ok(Fields(Map::with_capacity(len), Some(variant), self.child()))
    }
}

impl Seq<'_> {
    fn push<T: Serialize + ?Sized>(&mut self, v: &T) -> Result<(), Error> {
        self.0.push(v.serialize(self.2)?);
        Ok(())
    }
    fn done(self) -> Value {
        tagged(self.1, Value::Array(self.0))
    }
}

/// The four sequence-like builders are one: elements in order.
macro_rules! seq_builder {
    ($($trait:ident :: $method:ident),*) => {$(
        impl ser::$trait for Seq<'_> {
            type Ok = Value;
            type Error = Error;
            fn $method<T: Serialize + ?Sized>(&mut self, v: &T) -> Result<(), Error> {
                self.push(v)
            }
            fn end(self) -> Result<Value, Error> {
                Ok(self.done())
            }
        }
    )*};
}

seq_builder!(
    SerializeSeq::serialize_element,
    SerializeTuple::serialize_element,
    SerializeTupleStruct::serialize_field,
    SerializeTupleVariant::serialize_field
);

impl Fields<'_> {
    fn push<T: Serialize + ?Sized>(&mut self, key: &'static str, v: &T) -> Result<(), Error> {
        let v = v.serialize(self.2)?;
        self.0.fields.push((key, v));
        Ok(())
    }
    fn done(self) -> Value {
        tagged(self.1, Value::Object(self.0))
    }
}

/// A struct and a struct variant build alike: fields in order.
macro_rules! fields_builder {
    ($($trait:ident),*) => {$(
        impl ser::$trait for Fields<'_> {
            type Ok = Value;
            type Error = Error;
            fn serialize_field<T: Serialize + ?Sized>(
                &mut self,
                key: &'static str,
                v: &T,
            ) -> Result<(), Error> {
                self.push(key, v)
            }
            fn end(self) -> Result<Value, Error> {
                Ok(self.done())
            }
        }
    )*};
}

fields_builder!(SerializeStruct, SerializeStructVariant);

#[cfg(test)]
mod tests {
    use super::*;

    /// The same tree as `serde_json::to_value`, field for field.
    fn same(a: &Value, b: &serde_json::Value) -> bool {
        match (a, b) {
            (Value::Null, serde_json::Value::Null) => true,
            (Value::Bool(x), serde_json::Value::Bool(y)) => x == y,
            (Value::Int(x), serde_json::Value::Number(y)) => y.as_i64() == Some(*x),
            (Value::Float(x), serde_json::Value::Number(y)) => y.as_f64() == Some(*x),
            (Value::String(x), serde_json::Value::String(y)) => x == y,
            (Value::Array(x), serde_json::Value::Array(y)) => {
                x.len() == y.len() && x.iter().zip(y).all(|(p, q)| same(p, q))
            }
            (Value::Object(x), serde_json::Value::Object(y)) => {
                x.len() == y.len() && x.iter().all(|(k, v)| y.get(k).is_some_and(|w| same(v, w)))
            }
            _ => false,
        }
    }

    #[test]
    fn matches_serde_json_on_real_trees() {
        for sql in [
            "SELECT a, b.* FROM t AS b WHERE x = 1 AND y IN (1, 2, 3) ORDER BY 1 LIMIT 5",
            "INSERT INTO h (a, b) VALUES (1, -2.5, CURRENT_TIMESTAMP) RETURNING *",
            "WITH RECURSIVE r(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM r) SELECT * FROM r",
            "CREATE FUNCTION f() RETURNS int LANGUAGE sql BEGIN ATOMIC SELECT 1; END",
            "COPY (DELETE FROM t RETURNING *) TO STDOUT",
            "SET search_path = a, b; ALTER TABLE t DROP COLUMN c CASCADE",
        ] {
            let parsed = pg_query::parse(sql, pg_query::ParserOptions::DEFAULT).unwrap();
            for raw in &parsed.protobuf.stmts {
                let ours = to_tree(&raw.stmt).unwrap();
                let theirs = serde_json::to_value(&raw.stmt).unwrap();
                assert!(same(&ours, &theirs), "{sql}");
            }
        }
    }
}
