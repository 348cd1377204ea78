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
    let mut deserializer = serde_json::Deserializer::from_slice(body);
    let parsed = DynamicMessage::deserialize_with_options(
        request.descriptor(),
        &mut deserializer,
        &input.options(),
    )
    .and_then(|message| deserializer.end().map(|()| message))
    .map_err(|e| {
        let located = serde_json::from_slice(body)
            .ok()
            .and_then(|value| offending_field(&request.descriptor(), &value, input));
        match located {
            Some(field) => invalid(format!("invalid JSON body: field {field}: {e}")),
            None => invalid(format!("invalid JSON body: {e}")),
        }
    })?;
    *request = parsed;
    Ok(())
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
    let parsed =
        DynamicMessage::deserialize_with_options(request.descriptor(), wrapped, &input.options())
            .map_err(|e| invalid(format!("invalid JSON body for field {}: {e}", field.name())))?;
    if let Some(value) = parsed.get_field_by_name(field.name()) {
        request.set_field(field, value.into_owned());
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
    let Some(field) = response_body else {
        let mut out = Vec::with_capacity(128);
        if print.add_whitespace {
            response.serialize_with_options(&mut serde_json::Serializer::pretty(&mut out), &options)
        } else {
            response.serialize_with_options(&mut serde_json::Serializer::new(&mut out), &options)
        }
        .map_err(failed)?;
        return Ok(out);
    };
    // Render the whole message with defaults included, then keep only the one field.
    let whole = response
        .serialize_with_options(
            serde_json::value::Serializer,
            &options.skip_default_fields(false),
        )
        .map_err(failed)?;
    let key = if print.preserve_proto_field_names {
        field.name()
    } else {
        field.json_name()
    };
    let value = whole.get(key).cloned().unwrap_or(serde_json::Value::Null);
    if print.add_whitespace {
        serde_json::to_vec_pretty(&value).map_err(failed)
    } else {
        serde_json::to_vec(&value).map_err(failed)
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
