"""The protobuf adapter picks the argument name of the installed protobuf and prints defaults."""

from google.protobuf import __version__ as protobuf_version
from tensorflow_serving.apis import get_model_status_pb2, model_pb2

from serving import protocompat


def test_argument_name_matches_the_stacks_protobuf() -> None:
    # tfx-1.16 pins protobuf 3.20.3 (old name only); tfx-1.21 pins 6.33 (new name only).
    major = int(protobuf_version.split(".")[0])
    expected = (
        "including_default_value_fields" if major < 5 else "always_print_fields_with_no_presence"
    )
    assert expected == protocompat._PRINT_DEFAULTS_ARG, protobuf_version


def test_defaults_are_printed_and_options_pass_through() -> None:
    status = get_model_status_pb2.ModelVersionStatus()
    assert protocompat.message_to_dict_with_defaults(status) == {
        "version": "0",
        "state": "UNKNOWN",
    }
    spec = model_pb2.ModelSpec(name="m")
    assert protocompat.message_to_dict_with_defaults(spec, preserving_proto_field_name=True) == {
        "name": "m",
        "signature_name": "",
    }
