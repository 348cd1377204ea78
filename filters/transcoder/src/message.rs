//! Filling a dynamic request message from JSON, query parameters and path variables, and
//! rendering a response message as proto3 JSON.

use crate::config::PrintOptions;
use edge_core::percent_decode;
use edge_core::{GrpcCode, Status};
use prost_reflect::{
    DeserializeOptions, DynamicMessage, FieldDescriptor, Kind, MessageDescriptor, ReflectMessage,
    SerializeOptions, Value,
};

fn invalid(message: impl Into<String>) -> Status {
    Status::new(GrpcCode::InvalidArgument, message)
}

/// How JSON request bodies are read.
#[derive(Debug, Clone, Copy)]
pub struct JsonInput {
    pub deny_unknown_fields: bool,
}

impl JsonInput {
    fn options(self) -> DeserializeOptions {
        DeserializeOptions::new().deny_unknown_fields(self.deny_unknown_fields)
    }
}

/// `body: "*"`: the JSON object is the whole request. An empty body is an empty message.
pub fn merge_json(
    request: &mut DynamicMessage,
    body: &[u8],
    input: JsonInput,
) -> Result<(), Status> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(());
    }
    let value: serde_json::Value =
        serde_json::from_slice(body).map_err(|e| invalid(format!("invalid JSON body: {e}")))?;
    refuse_unknown_enum_names(&request.descriptor(), &value, input)?;
    let parsed =
        DynamicMessage::deserialize_with_options(request.descriptor(), &value, &input.options())
            .map_err(
                |e| match offending_field(&request.descriptor(), &value, input) {
                    Some(field) => invalid(format!("invalid JSON body: field {field}: {e}")),
                    None => invalid(format!("invalid JSON body: {e}")),
                },
            )?;
    *request = parsed;
    Ok(())
}

/// Dropping unknown fields (`reject_unknown_json_fields: false`) must not drop a value the
/// client sent for a known one: prost-reflect, like protojson's DiscardUnknown, would silently
/// leave out an enum name it does not know. Refused here instead, naming the field, as proto3
/// JSON and Envoy's transcoder do. (With unknown fields refused, prost-reflect refuses it.)
fn refuse_unknown_enum_names(
    descriptor: &MessageDescriptor,
    value: &serde_json::Value,
    input: JsonInput,
) -> Result<(), Status> {
    if input.deny_unknown_fields {
        return Ok(());
    }
    match unknown_enum_name(descriptor, value) {
        Some((field, name)) => Err(invalid(format!(
            "invalid JSON body: field {field}: unrecognized enum value '{name}'"
        ))),
        None => Ok(()),
    }
}

/// The first enum value in `value` (a JSON object for `descriptor`) that names no value of its
/// enum, with the dotted path of its field.
fn unknown_enum_name(
    descriptor: &MessageDescriptor,
    value: &serde_json::Value,
) -> Option<(String, String)> {
    let within = |key: &str, (path, name): (String, String)| {
        let path = if path.is_empty() {
            key.to_string()
        } else {
            format!("{key}.{path}")
        };
        (path, name)
    };
    for (key, inner) in value.as_object()? {
        let Some(field) = descriptor
            .get_field_by_json_name(key)
            .or_else(|| descriptor.get_field_by_name(key))
        else {
            continue;
        };
        let found = match field.kind() {
            Kind::Message(entry) if field.is_map() => {
                let kind = entry.map_entry_value_field().kind();
                inner.as_object().and_then(|map| {
                    map.iter()
                        .find_map(|(k, v)| unknown_enum_in(&kind, v).map(|found| within(k, found)))
                })
            }
            kind if field.is_list() => inner
                .as_array()
                .and_then(|items| items.iter().find_map(|item| unknown_enum_in(&kind, item))),
            kind => unknown_enum_in(&kind, inner),
        };
        if let Some(found) = found {
            return Some(within(key, found));
        }
    }
    None
}

fn unknown_enum_in(kind: &Kind, value: &serde_json::Value) -> Option<(String, String)> {
    match kind {
        Kind::Enum(descriptor) => value
            .as_str()
            .filter(|name| descriptor.get_value_by_name(name).is_none())
            .map(|name| (String::new(), name.to_string())),
        // Well-known types have JSON forms of their own (Struct takes any keys).
        Kind::Message(message) if !message.full_name().starts_with("google.protobuf.") => {
            unknown_enum_name(message, value)
        }
        _ => None,
    }
}

/// The dotted path of the first field of `value` that does not fit `descriptor`, found by
/// trying fields one at a time (only on the error path): errors then name what to fix.
fn offending_field(
    descriptor: &MessageDescriptor,
    value: &serde_json::Value,
    input: JsonInput,
) -> Option<String> {
    for (key, inner) in value.as_object()? {
        let alone = serde_json::json!({ key: inner });
        if DynamicMessage::deserialize_with_options(descriptor.clone(), alone, &input.options())
            .is_ok()
        {
            continue;
        }
        let field = descriptor
            .get_field_by_name(key)
            .or_else(|| descriptor.get_field_by_json_name(key));
        let nested = match field.as_ref().map(FieldDescriptor::kind) {
            Some(Kind::Message(message)) if inner.is_object() => {
                offending_field(&message, inner, input)
            }
            _ => None,
        };
        return Some(match nested {
            Some(path) => format!("{key}.{path}"),
            None => key.clone(),
        });
    }
    None
}

/// `body: "field"`: the JSON value fills one field of the request.
pub fn merge_json_field(
    request: &mut DynamicMessage,
    field: &FieldDescriptor,
    body: &[u8],
    input: JsonInput,
) -> Result<(), Status> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(());
    }
    let value: serde_json::Value =
        serde_json::from_slice(body).map_err(|e| invalid(format!("invalid JSON body: {e}")))?;
    let wrapped = serde_json::json!({ field.json_name(): value });
    refuse_unknown_enum_names(&request.descriptor(), &wrapped, input)?;
    let parsed =
        DynamicMessage::deserialize_with_options(request.descriptor(), wrapped, &input.options())
            .map_err(|e| invalid(format!("invalid JSON body for field {}: {e}", field.name())))?;
    // `null` (or a default) leaves the field unset, as proto3 JSON reads it.
    if parsed.has_field(field) {
        request.set_field(field, parsed.get_field(field).into_owned());
    }
    Ok(())
}

/// `body: "*"` from a binary protobuf client: the body is the request message itself.
pub fn merge_protobuf(request: &mut DynamicMessage, body: &[u8]) -> Result<(), Status> {
    prost::Message::merge(request, body).map_err(|e| invalid(format!("invalid protobuf body: {e}")))
}

/// `body: "field"` from a binary protobuf client: the body is that (message) field.
pub fn merge_protobuf_field(
    request: &mut DynamicMessage,
    field: &FieldDescriptor,
    body: &[u8],
) -> Result<(), Status> {
    let Kind::Message(descriptor) = field.kind() else {
        return Err(invalid(format!(
            "body field {} is not a message",
            field.name()
        )));
    };
    let message = DynamicMessage::decode(descriptor, body).map_err(|e| {
        invalid(format!(
            "invalid protobuf body for field {}: {e}",
            field.name()
        ))
    })?;
    request.set_field(field, Value::Message(message));
    Ok(())
}

/// Splits a query string into decoded key/value pairs; `+` is a space when `plus_as_space`
/// (HTML forms), else a literal `+`.
pub fn query_pairs(query: &str, plus_as_space: bool) -> Result<Vec<(String, String)>, Status> {
    query
        .split('&')
        .filter(|pair| !pair.is_empty())
        .map(|pair| {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            let decode = |text: &str| {
                let text = if plus_as_space {
                    std::borrow::Cow::Owned(text.replace('+', " "))
                } else {
                    std::borrow::Cow::Borrowed(text)
                };
                percent_decode(&text, false)
                    .ok_or_else(|| invalid(format!("malformed query parameter {pair:?}")))
            };
            Ok((decode(key)?, decode(value)?))
        })
        .collect()
}

/// A query parameter names a field by its proto or JSON name, nested with dots. Returns
/// whether the parameter named a field at all (the caller decides whether that is an error).
pub fn set_query_field(
    request: &mut DynamicMessage,
    key: &str,
    value: &str,
) -> Result<bool, Status> {
    set_field(request, key, value, false)
}

/// A path variable must name a field; it was checked when the route was built.
pub fn set_path_field(request: &mut DynamicMessage, key: &str, value: &str) -> Result<(), Status> {
    set_field(request, key, value, true).map(|_| ())
}

fn set_field(
    message: &mut DynamicMessage,
    key: &str,
    value: &str,
    required: bool,
) -> Result<bool, Status> {
    let (head, rest) = match key.split_once('.') {
        Some((head, rest)) => (head, Some(rest)),
        None => (key, None),
    };
    let descriptor = message.descriptor();
    let Some(field) = descriptor
        .get_field_by_name(head)
        .or_else(|| descriptor.get_field_by_json_name(head))
    else {
        return if required {
            Err(invalid(format!(
                "no field {key:?} in {}",
                descriptor.full_name()
            )))
        } else {
            Ok(false)
        };
    };
    match rest {
        Some(rest) => match message.get_field_mut(&field) {
            Value::Message(inner) if !field.is_list() => set_field(inner, rest, value, required),
            _ => Err(invalid(format!(
                "{head} is not a message field, cannot set {key}"
            ))),
        },
        None if field.is_map() => Err(invalid(format!(
            "map field {key} cannot be set from a string"
        ))),
        None => {
            let parsed = parse_value(&field.kind(), value)
                .ok_or_else(|| invalid(format!("invalid value for field {key}: {value:?}")))?;
            if field.is_list() {
                if let Value::List(list) = message.get_field_mut(&field) {
                    list.push(parsed);
                }
            } else {
                // Setting one member of a oneof clears the others: refuse rather than drop one.
                if let Some(oneof) = field.containing_oneof() {
                    if let Some(set) = oneof
                        .fields()
                        .find(|other| other.number() != field.number() && message.has_field(other))
                    {
                        return Err(invalid(format!(
                            "{key}: field {} of oneof {} is already set",
                            set.name(),
                            oneof.name()
                        )));
                    }
                }
                message.set_field(&field, parsed);
            }
            Ok(true)
        }
    }
}

/// Parses a path or query value as a field of `kind`, following proto3 JSON's string forms.
fn parse_value(kind: &Kind, text: &str) -> Option<Value> {
    Some(match kind {
        Kind::String => Value::String(text.to_string()),
        // Go's strconv.ParseBool, as grpc-gateway: a typo such as "yes" is refused rather than
        // silently read as one value or the other.
        Kind::Bool => Value::Bool(match text {
            "true" | "True" | "TRUE" | "t" | "T" | "1" => true,
            "false" | "False" | "FALSE" | "f" | "F" | "0" => false,
            _ => return None,
        }),
        Kind::Int32 | Kind::Sint32 | Kind::Sfixed32 => Value::I32(text.parse().ok()?),
        Kind::Int64 | Kind::Sint64 | Kind::Sfixed64 => Value::I64(text.parse().ok()?),
        Kind::Uint32 | Kind::Fixed32 => Value::U32(text.parse().ok()?),
        Kind::Uint64 | Kind::Fixed64 => Value::U64(text.parse().ok()?),
        Kind::Float => Value::F32(text.parse().ok()?),
        Kind::Double => Value::F64(text.parse().ok()?),
        Kind::Bytes => {
            use base64::Engine;
            let engines = [
                base64::engine::general_purpose::STANDARD,
                base64::engine::general_purpose::URL_SAFE,
                base64::engine::general_purpose::STANDARD_NO_PAD,
                base64::engine::general_purpose::URL_SAFE_NO_PAD,
            ];
            let bytes = engines.iter().find_map(|engine| engine.decode(text).ok())?;
            Value::Bytes(bytes.into())
        }
        Kind::Enum(descriptor) => match descriptor.get_value_by_name(text) {
            Some(value) => Value::EnumNumber(value.number()),
            None => Value::EnumNumber(text.parse().ok()?),
        },
        // Well-known types (Timestamp, Duration, FieldMask, wrappers) take their JSON form.
        Kind::Message(descriptor) => Value::Message(parse_message(descriptor, text)?),
    })
}

fn parse_message(descriptor: &MessageDescriptor, text: &str) -> Option<DynamicMessage> {
    let as_string = serde_json::Value::String(text.to_string());
    DynamicMessage::deserialize(descriptor.clone(), as_string)
        .ok()
        .or_else(|| {
            let literal: serde_json::Value = serde_json::from_str(text).ok()?;
            DynamicMessage::deserialize(descriptor.clone(), literal).ok()
        })
}

/// Renders a response as proto3 JSON: int64 as strings, bytes as base64, and (by default)
/// proto field names with unset fields omitted.
pub fn to_json(
    response: &DynamicMessage,
    response_body: Option<&FieldDescriptor>,
    print: &PrintOptions,
) -> Result<Vec<u8>, Status> {
    let options = SerializeOptions::new()
        .use_proto_field_name(print.preserve_proto_field_names)
        .skip_default_fields(!print.always_print_primitive_fields)
        .use_enum_numbers(print.always_print_enums_as_ints)
        .stringify_64_bit_integers(true);
    let failed = |e: serde_json::Error| {
        Status::new(GrpcCode::Internal, format!("cannot render response: {e}"))
    };
    let mut out = Vec::with_capacity(128);
    let Some(field) = response_body else {
        write_json(&mut out, response, &options, print.add_whitespace).map_err(failed)?;
        return Ok(out);
    };
    let key = if print.preserve_proto_field_names {
        field.name()
    } else {
        field.json_name()
    };
    // The one field as the whole message would print it; an unset field prints as its
    // default (`[]`, `0`, `""`, `{}` for a message).
    let rendered = response
        .serialize_with_options(serde_json::value::Serializer, &options)
        .map_err(failed)?;
    let value = match rendered.get(key) {
        Some(value) => value.clone(),
        None => response
            .serialize_with_options(
                serde_json::value::Serializer,
                &options.clone().skip_default_fields(false),
            )
            .map_err(failed)?
            .get(key)
            .filter(|value| !value.is_null())
            .cloned()
            .unwrap_or_else(|| serde_json::json!({})),
    };
    write_json(&mut out, &value, &options, print.add_whitespace).map_err(failed)?;
    Ok(out)
}

/// Serializes `value` (a message, or JSON already rendered from one) with [`ProtoJsonNumbers`].
fn write_json(
    out: &mut Vec<u8>,
    value: &impl SerializeWith,
    options: &SerializeOptions,
    pretty: bool,
) -> Result<(), serde_json::Error> {
    if pretty {
        let formatter = ProtoJsonNumbers(serde_json::ser::PrettyFormatter::new());
        value.serialize_with(
            &mut serde_json::Serializer::with_formatter(out, formatter),
            options,
        )
    } else {
        let formatter = ProtoJsonNumbers(serde_json::ser::CompactFormatter);
        value.serialize_with(
            &mut serde_json::Serializer::with_formatter(out, formatter),
            options,
        )
    }
}

/// A message (serialized with the options) or JSON rendered from one (as it is).
trait SerializeWith {
    fn serialize_with<S: serde::Serializer>(
        &self,
        serializer: S,
        options: &SerializeOptions,
    ) -> Result<S::Ok, S::Error>;
}

impl SerializeWith for DynamicMessage {
    fn serialize_with<S: serde::Serializer>(
        &self,
        serializer: S,
        options: &SerializeOptions,
    ) -> Result<S::Ok, S::Error> {
        self.serialize_with_options(serializer, options)
    }
}

impl SerializeWith for serde_json::Value {
    fn serialize_with<S: serde::Serializer>(
        &self,
        serializer: S,
        _options: &SerializeOptions,
    ) -> Result<S::Ok, S::Error> {
        serde::Serialize::serialize(self, serializer)
    }
}

/// proto3 JSON numbers as protojson and Envoy's transcoder print them: an integral `double` or
/// `float` without a fraction (`1000`, where serde_json prints `1000.0`). Everything else is
/// the wrapped formatter's.
struct ProtoJsonNumbers<F>(F);

/// Below this an integral float prints every digit (protojson switches to an exponent at 1e21).
const PLAIN_INTEGRAL_BELOW: f64 = 1e21;

impl<F: serde_json::ser::Formatter> serde_json::ser::Formatter for ProtoJsonNumbers<F> {
    fn write_f64<W: ?Sized + std::io::Write>(
        &mut self,
        writer: &mut W,
        value: f64,
    ) -> std::io::Result<()> {
        if value.fract() == 0.0 && value.abs() < PLAIN_INTEGRAL_BELOW {
            write!(writer, "{value:.0}")
        } else {
            self.0.write_f64(writer, value)
        }
    }

    fn write_f32<W: ?Sized + std::io::Write>(
        &mut self,
        writer: &mut W,
        value: f32,
    ) -> std::io::Result<()> {
        if value.fract() == 0.0 && f64::from(value).abs() < PLAIN_INTEGRAL_BELOW {
            write!(writer, "{value:.0}")
        } else {
            self.0.write_f32(writer, value)
        }
    }

    fn begin_array<W: ?Sized + std::io::Write>(&mut self, w: &mut W) -> std::io::Result<()> {
        self.0.begin_array(w)
    }

    fn end_array<W: ?Sized + std::io::Write>(&mut self, w: &mut W) -> std::io::Result<()> {
        self.0.end_array(w)
    }

    fn begin_array_value<W: ?Sized + std::io::Write>(
        &mut self,
        w: &mut W,
        first: bool,
    ) -> std::io::Result<()> {
        self.0.begin_array_value(w, first)
    }

    fn end_array_value<W: ?Sized + std::io::Write>(&mut self, w: &mut W) -> std::io::Result<()> {
        self.0.end_array_value(w)
    }

    fn begin_object<W: ?Sized + std::io::Write>(&mut self, w: &mut W) -> std::io::Result<()> {
        self.0.begin_object(w)
    }

    fn end_object<W: ?Sized + std::io::Write>(&mut self, w: &mut W) -> std::io::Result<()> {
        self.0.end_object(w)
    }

    fn begin_object_key<W: ?Sized + std::io::Write>(
        &mut self,
        w: &mut W,
        first: bool,
    ) -> std::io::Result<()> {
        self.0.begin_object_key(w, first)
    }

    fn begin_object_value<W: ?Sized + std::io::Write>(&mut self, w: &mut W) -> std::io::Result<()> {
        self.0.begin_object_value(w)
    }

    fn end_object_value<W: ?Sized + std::io::Write>(&mut self, w: &mut W) -> std::io::Result<()> {
        self.0.end_object_value(w)
    }
}

/// The JSON form of one `google.protobuf.Any` detail: its fields plus `@type` when the type is
/// in the descriptor set, else the raw bytes in base64 (nothing a backend sends is lost).
pub fn any_to_json(
    pool: &prost_reflect::DescriptorPool,
    type_url: &str,
    value: &[u8],
    print: &PrintOptions,
) -> serde_json::Value {
    use base64::Engine;
    let type_name = type_url.rsplit('/').next().unwrap_or(type_url);
    let options = SerializeOptions::new()
        .use_proto_field_name(print.preserve_proto_field_names)
        .stringify_64_bit_integers(true);
    let rendered = pool
        .get_message_by_name(type_name)
        .and_then(|descriptor| DynamicMessage::decode(descriptor, value).ok())
        .and_then(|message| {
            message
                .serialize_with_options(serde_json::value::Serializer, &options)
                .ok()
        });
    let mut object = serde_json::Map::new();
    object.insert("@type".into(), type_url.into());
    match rendered {
        Some(serde_json::Value::Object(fields)) => object.extend(fields),
        _ => {
            let encoded = base64::engine::general_purpose::STANDARD.encode(value);
            object.insert("value".into(), encoded.into());
        }
    }
    serde_json::Value::Object(object)
}
