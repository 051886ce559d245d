//! Config and secret values as they arrive in JSON: a string, `null`, or something else.
//!
//! They are parsed leniently here and checked afterwards, so a number where a string
//! belongs is answered with 422 naming `config.KEY` instead of a serde message, and so a
//! secret's plaintext goes straight into a `SecretString` without passing through a
//! `serde_json::Value` that could be printed.

use std::fmt;
use std::marker::PhantomData;

use secrecy::SecretString;
use serde::de::{self, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde::Deserialize;

/// One value of a `config` or `secrets` map.
#[derive(Debug)]
pub enum JsonText<T> {
    /// A JSON string.
    Text(T),
    /// `null`: remove the key (only meaningful in a PATCH).
    Null,
    /// Any other JSON value; the name of its kind, for the error message.
    Other(&'static str),
}

/// A plain config value.
pub type ConfigValue = JsonText<String>;
/// A secret value, held in a `SecretString` from the moment it is parsed.
pub type SecretValue = JsonText<SecretString>;

impl<'de, T: From<String>> Deserialize<'de> for JsonText<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(TextVisitor(PhantomData))
    }
}

struct TextVisitor<T>(PhantomData<T>);

impl<'de, T: From<String>> Visitor<'de> for TextVisitor<T> {
    type Value = JsonText<T>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a string or null")
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
        Ok(JsonText::Text(T::from(v.to_owned())))
    }

    fn visit_string<E: de::Error>(self, v: String) -> Result<Self::Value, E> {
        Ok(JsonText::Text(T::from(v)))
    }

    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(JsonText::Null)
    }

    fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(JsonText::Null)
    }

    fn visit_bool<E: de::Error>(self, _: bool) -> Result<Self::Value, E> {
        Ok(JsonText::Other("a boolean"))
    }

    fn visit_i64<E: de::Error>(self, _: i64) -> Result<Self::Value, E> {
        Ok(JsonText::Other("a number"))
    }

    fn visit_u64<E: de::Error>(self, _: u64) -> Result<Self::Value, E> {
        Ok(JsonText::Other("a number"))
    }

    fn visit_f64<E: de::Error>(self, _: f64) -> Result<Self::Value, E> {
        Ok(JsonText::Other("a number"))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(JsonText::Other("an array"))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
        Ok(JsonText::Other("an object"))
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use secrecy::ExposeSecret;

    use super::*;

    #[test]
    fn strings_nulls_and_the_rest_are_told_apart() {
        let parsed: BTreeMap<String, ConfigValue> =
            serde_json::from_str(r#"{"a":"x","b":null,"c":1,"d":true,"e":{"k":[1]},"f":[]}"#)
                .unwrap_or_default();
        assert!(matches!(&parsed["a"], JsonText::Text(s) if s == "x"));
        assert!(matches!(parsed["b"], JsonText::Null));
        assert!(matches!(parsed["c"], JsonText::Other("a number")));
        assert!(matches!(parsed["d"], JsonText::Other("a boolean")));
        assert!(matches!(parsed["e"], JsonText::Other("an object")));
        assert!(matches!(parsed["f"], JsonText::Other("an array")));
    }

    #[test]
    fn secrets_are_never_debug_printed() {
        let parsed: BTreeMap<String, SecretValue> =
            serde_json::from_str(r#"{"TOKEN":"hunter2"}"#).unwrap_or_default();
        assert!(!format!("{parsed:?}").contains("hunter2"));
        assert!(matches!(&parsed["TOKEN"], JsonText::Text(s) if s.expose_secret() == "hunter2"));
    }
}
