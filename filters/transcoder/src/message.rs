//! Filling a dynamic request message from JSON, query parameters and path variables, and
//! rendering a response message as proto3 JSON.

use crate::config::PrintOptions;
use crate::template::percent_decode;
use edge_core::{GrpcCode, Status};
use prost_reflect::{
    DeserializeOptions, DynamicMessage, FieldDescriptor, Kind, MessageDescriptor, ReflectMessage,
    SerializeOptions, Value,
};

fn invalid(message: impl Into<String>) -> Status {
    Status::new(GrpcCode::InvalidArgument, message)
}

fn deserialize_options() -> DeserializeOptions {
    // Unknown JSON fields are dropped, as grpc-gateway (and Mercari's gateway) do, so clients
    // and servers can evolve independently.
    DeserializeOptions::new().deny_unknown_fields(false)
}

/// `body: "*"`: the JSON object is the whole request. An empty body is an empty message.
pub fn merge_json(request: &mut DynamicMessage, body: &[u8]) -> Result<(), Status> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(());
    }
    let mut deserializer = serde_json::Deserializer::from_slice(body);
    let parsed = DynamicMessage::deserialize_with_options(
        request.descriptor(),
        &mut deserializer,
        &deserialize_options(),
    )
    .and_then(|message| deserializer.end().map(|()| message))
    .map_err(|e| invalid(format!("invalid JSON body: {e}")))?;
    *request = parsed;
    Ok(())
}

/// `body: "field"`: the JSON value fills one field of the request.
pub fn merge_json_field(
    request: &mut DynamicMessage,
    field: &FieldDescriptor,
    body: &[u8],
) -> Result<(), Status> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(());
    }
    let value: serde_json::Value =
        serde_json::from_slice(body).map_err(|e| invalid(format!("invalid JSON body: {e}")))?;
    let wrapped = serde_json::json!({ field.json_name(): value });
    let parsed = DynamicMessage::deserialize_with_options(
        request.descriptor(),
        wrapped,
        &deserialize_options(),
    )
    .map_err(|e| invalid(format!("invalid JSON body for field {}: {e}", field.name())))?;
    if let Some(value) = parsed.get_field_by_name(field.name()) {
        request.set_field(field, value.into_owned());
    }
    Ok(())
}

/// Splits a query string into decoded key/value pairs (`+` is a space, as in HTML forms).
pub fn query_pairs(query: &str) -> Result<Vec<(String, String)>, Status> {
    query
        .split('&')
        .filter(|pair| !pair.is_empty())
        .map(|pair| {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            let decode = |text: &str| {
                percent_decode(&text.replace('+', " "), false)
                    .ok_or_else(|| invalid(format!("malformed query parameter {pair:?}")))
            };
            Ok((decode(key)?, decode(value)?))
        })
        .collect()
}

/// A query parameter names a field by its proto or JSON name, nested with dots. Parameters
/// naming no field are ignored (grpc-gateway's behaviour).
pub fn set_query_field(request: &mut DynamicMessage, key: &str, value: &str) -> Result<(), Status> {
    set_field(request, key, value, false)
}

/// A path variable must name a field; it was checked when the route was built.
pub fn set_path_field(request: &mut DynamicMessage, key: &str, value: &str) -> Result<(), Status> {
    set_field(request, key, value, true)
}

fn set_field(
    message: &mut DynamicMessage,
    key: &str,
    value: &str,
    required: bool,
) -> Result<(), Status> {
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
            Ok(())
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
            Ok(())
        }
    }
}

/// Parses a path or query value as a field of `kind`, following proto3 JSON's string forms.
fn parse_value(kind: &Kind, text: &str) -> Option<Value> {
    Some(match kind {
        Kind::String => Value::String(text.to_string()),
        Kind::Bool => Value::Bool(match text {
            "true" => true,
            "false" => false,
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
        response
            .serialize_with_options(&mut serde_json::Serializer::new(&mut out), &options)
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
    serde_json::to_vec(&value).map_err(failed)
}
