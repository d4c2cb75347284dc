//! The `tagged_enum!` macro: a `"type"`-tagged serde enum that keeps unknown variants.
//!
//! serde's derived internally tagged enums can only keep an unknown `type` as a unit
//! variant, which loses its data. The wire formats grow new block, item and event types all
//! the time, and those must pass through a parse and re-serialise unchanged, so every tagged
//! enum of this crate gets an `Other(Map)` variant that holds the whole object.

use serde::Serialize;

/// Serialises `inner` with a `"type": tag` entry in front.
#[derive(Serialize)]
pub(crate) struct Tagged<'a, T> {
    #[serde(rename = "type")]
    pub(crate) tag: &'static str,
    #[serde(flatten)]
    pub(crate) inner: &'a T,
}

/// Defines a `"type"`-tagged enum whose variants each wrap one struct, plus an `Other`
/// variant for types this crate does not know. `missing = "tag"` names the variant used
/// when an object has no `type` at all (the Responses API's bare `{role, content}` input).
macro_rules! tagged_enum {
    (
        $(#[$meta:meta])*
        pub enum $name:ident $( [missing = $missing:literal] )? {
            $( $(#[$vmeta:meta])* $tag:literal => $variant:ident($ty:ty), )*
        }
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, PartialEq)]
        pub enum $name {
            $( $(#[$vmeta])* $variant($ty), )*
            /// A `type` this crate does not know, kept whole so that it passes through.
            Other(serde_json::Map<String, serde_json::Value>),
        }

        impl $name {
            /// The `type` tag of this value (empty when an unknown value has none).
            pub fn type_name(&self) -> &str {
                match self {
                    $( Self::$variant(_) => $tag, )*
                    Self::Other(map) => map.get("type").and_then(|tag| tag.as_str()).unwrap_or(""),
                }
            }
        }

        impl serde::Serialize for $name {
            fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                match self {
                    $( Self::$variant(inner) => {
                        $crate::tagged::Tagged { tag: $tag, inner }.serialize(serializer)
                    } )*
                    Self::Other(map) => map.serialize(serializer),
                }
            }
        }

        impl<'de> serde::Deserialize<'de> for $name {
            fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                let mut map = <serde_json::Map<String, serde_json::Value>>::deserialize(deserializer)?;
                #[allow(unused_mut, unused_assignments)]
                let mut missing: Option<&str> = None;
                $( missing = Some($missing); )?
                let tag: String = match map.get("type") {
                    Some(serde_json::Value::String(tag)) => tag.clone(),
                    None => match missing {
                        Some(tag) => tag.to_owned(),
                        None => return Ok(Self::Other(map)),
                    },
                    Some(_) => return Ok(Self::Other(map)),
                };
                match tag.as_str() {
                    $( $tag => {
                        map.remove("type");
                        serde_json::from_value(serde_json::Value::Object(map))
                            .map(Self::$variant)
                            .map_err(|error| serde::de::Error::custom(format_args!("{} `{}`: {}", "type", $tag, error)))
                    } )*
                    _ => Ok(Self::Other(map)),
                }
            }
        }
    };
}

pub(crate) use tagged_enum;

/// Implements `Deserialize` for a `Text(String)` / list enum (message content, system
/// prompt, input). serde's untagged enums would hide why a list failed ("did not match any
/// variant"); this keeps the inner error and its path.
macro_rules! string_or_list {
    ($name:ident, $text:ident, $list:ident, $item:ty) => {
        impl<'de> serde::Deserialize<'de> for $name {
            fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                struct Visitor;
                impl<'de> serde::de::Visitor<'de> for Visitor {
                    type Value = $name;

                    fn expecting(
                        &self,
                        formatter: &mut std::fmt::Formatter<'_>,
                    ) -> std::fmt::Result {
                        formatter.write_str("a string or a list")
                    }

                    fn visit_str<E: serde::de::Error>(self, text: &str) -> Result<$name, E> {
                        Ok($name::$text(text.to_owned()))
                    }

                    fn visit_string<E: serde::de::Error>(self, text: String) -> Result<$name, E> {
                        Ok($name::$text(text))
                    }

                    fn visit_seq<A: serde::de::SeqAccess<'de>>(
                        self,
                        seq: A,
                    ) -> Result<$name, A::Error> {
                        <Vec<$item> as serde::Deserialize>::deserialize(
                            serde::de::value::SeqAccessDeserializer::new(seq),
                        )
                        .map($name::$list)
                    }
                }
                deserializer.deserialize_any(Visitor)
            }
        }
    };
}

pub(crate) use string_or_list;
