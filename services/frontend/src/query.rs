//! Query strings, read into a struct whose fields are the parameters an
//! endpoint accepts: that struct is the one list of its names (params.rs
//! holds them). Every rejection names the parameter, so a caller knows what
//! to fix; nothing unparsed ever reaches a query.

use std::fmt::Display;

use serde::de::value::MapDeserializer;
use serde::de::{self, DeserializeOwned, Deserializer, IntoDeserializer, Visitor};
use serde::forward_to_deserialize_any;

/// No parameter value we accept is longer; a longer one is refused before
/// any parsing.
const MAX_VALUE_CHARS: usize = 256;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid parameter `{parameter}`: {detail}")]
pub struct ParamError {
    pub parameter: String,
    pub detail: String,
}

impl ParamError {
    pub fn new(parameter: &str, detail: impl Into<String>) -> Self {
        // The name is echoed back; a hostile one is cut short.
        let parameter: String = parameter.chars().take(64).collect();
        Self {
            parameter,
            detail: detail.into(),
        }
    }
}

/// What serde reports while reading a query into a struct: only a field
/// that is not text could fail, and every field is text.
impl de::Error for ParamError {
    fn custom<T: Display>(message: T) -> Self {
        Self::new("query", message.to_string())
    }
}

/// For the API: an unknown, repeated or overlong parameter is an error,
/// reported for the first such pair in the query. An empty value counts as
/// absent (`?city=` from an empty form).
pub fn strict<T: DeserializeOwned>(query: &str) -> Result<T, ParamError> {
    let pairs = serde_urlencoded::from_str(query)
        .map_err(|error| ParamError::new("query", error.to_string()))?;
    T::deserialize(Query {
        pairs,
        pick: checked_values,
    })
}

/// For the page: parameters it does not know are ignored (tracking tags and
/// the like), the first of a repeated one wins, an empty value counts as
/// absent, and a query that cannot be read counts as empty.
pub fn lenient<T: DeserializeOwned + Default>(query: &str) -> T {
    let pairs = serde_urlencoded::from_str(query).unwrap_or_default();
    T::deserialize(Query {
        pairs,
        pick: first_values,
    })
    .unwrap_or_default()
}

type Pairs = Vec<(String, String)>;
type Values = Vec<(&'static str, String)>;

fn checked_values(pairs: Pairs, fields: &'static [&'static str]) -> Result<Values, ParamError> {
    let mut values: Values = Vec::new();
    for (name, value) in pairs {
        let Some(field) = fields.iter().copied().find(|field| *field == name) else {
            return Err(ParamError::new(
                &name,
                format!(
                    "unknown parameter; this endpoint accepts {}",
                    fields.join(", ")
                ),
            ));
        };
        if value.chars().count() > MAX_VALUE_CHARS {
            return Err(ParamError::new(
                field,
                format!("longer than {MAX_VALUE_CHARS} characters"),
            ));
        }
        if values.iter().any(|(given, _)| *given == field) {
            return Err(ParamError::new(field, "given more than once"));
        }
        if !value.is_empty() {
            values.push((field, value));
        }
    }
    Ok(values)
}

fn first_values(pairs: Pairs, fields: &'static [&'static str]) -> Result<Values, ParamError> {
    let mut seen: Vec<&'static str> = Vec::new();
    let mut values: Values = Vec::new();
    for (name, value) in pairs {
        let Some(field) = fields.iter().copied().find(|field| *field == name) else {
            continue;
        };
        if seen.contains(&field) {
            continue;
        }
        seen.push(field);
        if !value.is_empty() {
            values.push((field, value));
        }
    }
    Ok(values)
}

/// A decoded query, handed to a struct's `Deserialize`: serde tells it the
/// struct's field names, `pick` decides which pairs become their values.
struct Query {
    pairs: Pairs,
    pick: fn(Pairs, &'static [&'static str]) -> Result<Values, ParamError>,
}

impl<'de> Deserializer<'de> for Query {
    type Error = ParamError;

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, ParamError> {
        let values = (self.pick)(self.pairs, fields)?;
        visitor.visit_map(MapDeserializer::new(
            values
                .into_iter()
                .map(|(field, value)| (field, Text(value))),
        ))
    }

    fn deserialize_any<V: Visitor<'de>>(self, _visitor: V) -> Result<V::Value, ParamError> {
        Err(de::Error::custom(
            "a query string is read into a struct with named fields",
        ))
    }

    forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string
        bytes byte_buf option unit unit_struct newtype_struct seq tuple
        tuple_struct map enum identifier ignored_any
    }
}

/// One parameter's value. It is present, so an `Option` field gets `Some`.
struct Text(String);

impl<'de> Deserializer<'de> for Text {
    type Error = ParamError;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, ParamError> {
        visitor.visit_string(self.0)
    }

    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, ParamError> {
        visitor.visit_some(self)
    }

    forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string
        bytes byte_buf unit unit_struct newtype_struct seq tuple
        tuple_struct map struct enum identifier ignored_any
    }
}

impl IntoDeserializer<'_, ParamError> for Text {
    type Deserializer = Self;

    fn into_deserializer(self) -> Self {
        self
    }
}

#[cfg(test)]
mod tests {
    use serde::Deserialize;

    use super::*;

    #[derive(Debug, Default, Deserialize, PartialEq)]
    struct Two {
        city: Option<String>,
        limit: Option<String>,
    }

    fn two(city: Option<&str>, limit: Option<&str>) -> Two {
        Two {
            city: city.map(Into::into),
            limit: limit.map(Into::into),
        }
    }

    #[test]
    fn strict_refuses_the_first_bad_pair_and_names_it() {
        let error = strict::<Two>("colour=red&limit=1&limit=2").unwrap_err();
        assert_eq!(error.parameter, "colour");
        assert_eq!(
            error.detail,
            "unknown parameter; this endpoint accepts city, limit"
        );
        let error = strict::<Two>("limit=1&limit=2&colour=red").unwrap_err();
        assert_eq!(
            (error.parameter.as_str(), error.detail.as_str()),
            ("limit", "given more than once")
        );
        let error = strict::<Two>(&format!("city={}", "a".repeat(257))).unwrap_err();
        assert_eq!(error.detail, "longer than 256 characters");
    }

    #[test]
    fn strict_takes_empty_values_as_absent() {
        assert_eq!(strict::<Two>("city=&limit=").unwrap(), two(None, None));
        // An empty value does not count as given.
        assert_eq!(
            strict::<Two>("city=&city=Cali").unwrap(),
            two(Some("Cali"), None)
        );
        assert!(strict::<Two>("city=Cali&city=").is_err());
    }

    #[test]
    fn lenient_ignores_unknown_names_and_keeps_the_first_value() {
        assert_eq!(
            lenient::<Two>("utm=1&city=Cali&city=Pereira"),
            two(Some("Cali"), None)
        );
        assert_eq!(lenient::<Two>("city=&city=Cali"), two(None, None));
        assert_eq!(
            lenient::<Two>(&format!("city={}", "a".repeat(300)))
                .city
                .unwrap()
                .len(),
            300
        );
    }
}
