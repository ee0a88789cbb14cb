//! Closed sets of names that travel as plain JSON strings (error codes,
//! access request statuses), typed on both sides of the wire.
//!
//! Each set is an enum whose JSON form is exactly the string it always was,
//! so peers that compare strings keep working. A name this side does not
//! know, sent by a newer peer, still parses: it is kept, as received, in the
//! enum's `Other` variant rather than failing the whole answer. A known name
//! never lands in `Other` (only parsing makes an [`OtherName`]), so comparing
//! with a variant is enough.

/// A name outside the set this side knows, exactly as received.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct OtherName(String);

impl OtherName {
    /// Only the generated `From<&str>` makes one, after every known name
    /// failed to match.
    pub(crate) fn new(name: &str) -> OtherName {
        OtherName(name.to_owned())
    }

    /// The name as received.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Declares a wire-name enum: its variants with their strings, `as_str`,
/// parsing from any string (unknown ones to `Other`), `Display`, and serde
/// as a plain string.
macro_rules! wire_names {
    (
        $(#[$meta:meta])*
        pub enum $name:ident {
            $($(#[$variant_meta:meta])* $variant:ident = $text:literal,)+
        }
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash)]
        #[non_exhaustive]
        pub enum $name {
            $($(#[$variant_meta])* $variant,)+
            /// A name this side does not know (from a newer peer), as received.
            Other($crate::wire_name::OtherName),
        }

        impl $name {
            /// Every name this side knows, in declaration order.
            pub const KNOWN: &'static [$name] = &[$($name::$variant,)+];

            /// The wire string.
            pub fn as_str(&self) -> &str {
                match self {
                    $($name::$variant => $text,)+
                    $name::Other(other) => other.as_str(),
                }
            }
        }

        impl From<&str> for $name {
            fn from(text: &str) -> $name {
                match text {
                    $($text => $name::$variant,)+
                    other => $name::Other($crate::wire_name::OtherName::new(other)),
                }
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl serde::Serialize for $name {
            fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                serializer.serialize_str(self.as_str())
            }
        }

        impl<'de> serde::Deserialize<'de> for $name {
            fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<$name, D::Error> {
                let text = String::deserialize(deserializer)?;
                Ok($name::from(text.as_str()))
            }
        }
    };
}

pub(crate) use wire_names;
