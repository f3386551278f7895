//! How an aggregate's events map to the log's versioned type names.

/// Declares an aggregate's event enum: each variant wraps a payload struct and
/// has a versioned name. Generates `event_type`, `payload` and `decode`
/// (which returns `None` for another aggregate's events).
#[macro_export]
macro_rules! domain_events {
    ($(#[$doc:meta])* $name:ident { $($variant:ident($payload:ty) = $type_name:literal),* $(,)? }) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq)]
        pub enum $name {
            $($variant($payload)),*
        }

        impl $name {
            /// All type names of this aggregate's events.
            pub const TYPES: &'static [&'static str] = &[$($type_name),*];

            /// The versioned type name stored in the log.
            pub fn event_type(&self) -> &'static str {
                match self {
                    $(Self::$variant(_) => $type_name),*
                }
            }

            /// The JSON payload stored in the log.
            pub fn payload(&self) -> serde_json::Value {
                match self {
                    $(Self::$variant(p) => serde_json::to_value(p).unwrap_or(serde_json::Value::Null)),*
                }
            }

            /// Reads an event of this aggregate back; `Ok(None)` if the type
            /// belongs to another aggregate.
            pub fn decode(event_type: &str, payload: &serde_json::Value) -> Result<Option<Self>, $crate::DomainError> {
                match event_type {
                    $($type_name => serde_json::from_value(payload.clone())
                        .map(|p| Some(Self::$variant(p)))
                        .map_err(|e| $crate::DomainError::invalid("event", format!("{}: {e}", $type_name))),)*
                    _ => Ok(None),
                }
            }
        }
    };
}
