"""Wire format without sockets: every message type round trips, every bad frame has its reason."""

from __future__ import annotations

import dataclasses
import math

import msgpack
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bridge import (
    PROTOCOL_VERSION,
    REJECT_REASONS,
    Action,
    ActuatorSpec,
    BusStats,
    Event,
    Heartbeat,
    Observation,
    Prediction,
    ProtocolError,
    SensorSpec,
    StreamSchema,
    StreamStats,
    decode,
    encode,
)
from bridge.messages import EVENT_CATEGORIES, SEVERITIES

# --- strategies -------------------------------------------------------------------------------

names = st.from_regex(r"[A-Za-z0-9][A-Za-z0-9_\-]{0,20}", fullmatch=True)
sources = st.one_of(st.just(""), names)
seqs = st.integers(min_value=-1, max_value=2**63 - 1)
t_nss = st.integers(min_value=0, max_value=2**63 - 1)
i64 = st.integers(min_value=-(2**63), max_value=2**63 - 1)
finite = st.floats(allow_nan=False, allow_infinity=False)
bounds = st.floats(allow_nan=False)


@st.composite
def arrays(draw, dtypes=("<f4", ">f4", "<f8", ">f8"), max_dims: int = 2, min_side: int = 0):
    """Arrays whose bytes are arbitrary: every NaN payload, infinities, subnormals, -0.0."""
    dtype = np.dtype(draw(st.sampled_from(dtypes)))
    shape = tuple(draw(st.lists(st.integers(min_side, 5), min_size=1, max_size=max_dims)))
    size = dtype.itemsize * math.prod(shape)
    raw = draw(st.binary(min_size=size, max_size=size))
    return np.frombuffer(raw, dtype=dtype).reshape(shape)


def wire_bytes(array: np.ndarray) -> bytes:
    """What must travel: the C-order bytes, byte-swapped when the input was big-endian."""
    contiguous = np.ascontiguousarray(array)
    return contiguous.byteswap().tobytes() if array.dtype.byteorder == ">" else contiguous.tobytes()


def assert_same_array(sent: np.ndarray, got: np.ndarray) -> None:
    assert got.dtype == sent.dtype.newbyteorder("<")
    assert got.dtype.str[0] in "<|"
    assert got.shape == sent.shape
    assert got.tobytes() == wire_bytes(sent)  # bitwise, so NaN payloads count too


def got_topic(message, source: str) -> bytes:
    """Heartbeat and stats topics name their source; the others do not depend on it."""
    if isinstance(message, (Heartbeat, BusStats)):
        return f"{message.KIND}.{source or 'unknown'}".encode()
    return message.topic.encode()


def round_trip(message, source: str, seq: int):
    frames = encode(message, source=source, seq=seq)
    assert all(isinstance(f, bytes) for f in frames)
    assert frames[0] == got_topic(message, source)
    got = decode(frames)
    assert type(got) is type(message)
    assert (got.source, got.seq, got.t_ns) == (source, seq, message.t_ns)
    return got


@st.composite
def sensors(draw, count: int):
    names_ = draw(st.lists(names, min_size=count, max_size=count, unique=True))
    out = []
    for name in names_:
        low, high = sorted((draw(bounds), draw(bounds)))
        out.append(
            SensorSpec(
                name,
                draw(st.sampled_from(["m", "rad/s", "K", "1"])),
                low,
                high,
                draw(st.booleans()),
                draw(st.text(max_size=20)),
            )
        )
    return tuple(out)


@st.composite
def schemas(draw):
    kind = draw(st.sampled_from(["vector", "image"]))
    if kind == "vector":
        n = draw(st.integers(1, 6))
        shape: tuple[int, ...] = (n,)
    else:
        n = draw(st.integers(1, 4))
        shape = (draw(st.integers(1, 480)), draw(st.integers(1, 640)), n)
    actuators = []
    for name in draw(st.lists(names, max_size=3, unique=True)):
        low, high = sorted((draw(bounds), draw(bounds)))
        actuators.append(ActuatorSpec(name, "N", low, high, draw(st.text(max_size=10))))
    return StreamSchema(
        asset=draw(names),
        stream=draw(names),
        kind=kind,
        dtype=draw(st.sampled_from(["<f4", "<f8", ">f4", "<i4", "|u1", "|b1", "<u2"])),
        shape=shape,
        rate_hz=draw(st.floats(min_value=1e-3, max_value=1e6)),
        sensors=draw(sensors(n)),
        actuators=tuple(actuators),
        description=draw(st.text(max_size=40)),
        t_ns=draw(t_nss),
    )


# --- round trips ------------------------------------------------------------------------------


@given(schemas(), sources, seqs)
def test_schema_round_trips(schema, source, seq):
    got = round_trip(schema, source, seq)
    assert got == dataclasses.replace(schema, source=source, seq=seq)
    assert got.schema_id == schema.schema_id
    assert got.dtype.startswith(("<", "|"))


@given(
    names,
    names,
    t_nss,
    arrays(max_dims=1, dtypes=("<f4", ">f4", "<f8", ">f8")),
    sources,
    seqs,
    st.text(alphabet="0123456789abcdef", max_size=12),
)
def test_vector_observation_round_trips_bitwise(asset, stream, t_ns, values, source, seq, schema_id):
    obs = Observation(asset, stream, t_ns, values, schema_id=schema_id)
    got = round_trip(obs, source, seq)
    assert (got.asset, got.stream, got.schema_id) == (asset, stream, schema_id)
    assert_same_array(values, got.values)


@settings(max_examples=30)
@given(st.integers(0, 2**32 - 1), st.sampled_from(["random", "zeros", "max"]), t_nss, seqs)
def test_image_observation_round_trips_bitwise(seed, pattern, t_ns, seq):
    if pattern == "random":
        pixels = np.random.default_rng(seed).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    else:
        pixels = np.full((64, 64, 3), 0 if pattern == "zeros" else 255, dtype=np.uint8)
    got = round_trip(Observation("rig", "cam", t_ns, pixels), "cam-1", seq)
    assert len(encode(Observation("rig", "cam", t_ns, pixels))[2]) == 64 * 64 * 3
    assert_same_array(pixels, got.values)


def test_special_float_values_survive_bitwise():
    signalling_nan = np.array([0x7FA00001], dtype="<u4").view("<f4")[0]
    values = np.array([np.nan, -np.nan, signalling_nan, np.inf, -np.inf, -0.0, 1e-45], dtype="<f4")
    for dtype in ("<f4", ">f4"):
        sent = values.astype(dtype)
        assert_same_array(sent, decode(encode(Observation("a", "b", 0, sent))).values)


def test_big_endian_input_is_sent_little_endian():
    sent = np.arange(4, dtype=">f8")
    frames = encode(Observation("a", "b", 0, sent))
    descriptor = msgpack.unpackb(frames[1])["arrays"][0]
    assert descriptor == ["values", "<f8", [4]]
    assert frames[2] == np.arange(4, dtype="<f8").tobytes()


def test_non_contiguous_arrays_travel_in_c_order():
    base = np.arange(24, dtype="<f4").reshape(4, 6)
    for view in (base[:, ::2], base.T, np.asfortranarray(base)):
        got = decode(encode(Action("a", 0, view.ravel(order="K")[::1]))).values
        assert got.tobytes() == np.ascontiguousarray(view.ravel(order="K")).tobytes()
        mean = np.ascontiguousarray(view)
        pred = Prediction("a", "b", 0, 0, np.zeros(view.shape[0]), view, view, view)
        assert decode(encode(pred)).mean.tobytes() == mean.tobytes()


@given(names, t_nss, arrays(max_dims=1, dtypes=("<f4", "<f8", ">f8", "<i2")), names, sources, seqs)
def test_action_round_trips(asset, t_ns, values, stream, source, seq):
    got = round_trip(Action(asset, t_ns, values, stream=stream), source, seq)
    assert (got.asset, got.stream) == (asset, stream)
    assert_same_array(values, got.values)


@st.composite
def predictions(draw):
    horizons = draw(st.integers(0, 5))
    n = draw(st.integers(1, 4))
    dtype = draw(st.sampled_from(["<f4", ">f4", "<f8"]))

    def block(shape):
        size = np.dtype(dtype).itemsize * math.prod(shape)
        return np.frombuffer(draw(st.binary(min_size=size, max_size=size)), dtype=dtype).reshape(shape)

    return Prediction(
        asset=draw(names),
        stream=draw(names),
        t_ns=draw(t_nss),
        origin_t_ns=draw(t_nss),
        horizons_s=block((horizons,)),
        mean=block((horizons, n)),
        lower=block((horizons, n)),
        upper=block((horizons, n)),
        level=draw(st.floats(min_value=0.0, max_value=1.0, exclude_min=True, exclude_max=True)),
        model=draw(st.text(max_size=20)),
    )


@given(predictions(), sources, seqs)
def test_prediction_round_trips(pred, source, seq):
    got = round_trip(pred, source, seq)
    assert (got.asset, got.stream, got.origin_t_ns, got.level, got.model) == (
        pred.asset,
        pred.stream,
        pred.origin_t_ns,
        pred.level,
        pred.model,
    )
    for name in ("horizons_s", "mean", "lower", "upper"):
        assert_same_array(getattr(pred, name), getattr(got, name))


param_values = st.one_of(st.text(max_size=20), i64, finite, st.booleans())


@given(
    names,
    t_nss,
    st.sampled_from(EVENT_CATEGORIES),
    st.text(min_size=1, max_size=20),
    st.sampled_from(SEVERITIES),
    st.text(max_size=50),
    st.dictionaries(st.text(max_size=10), param_values, max_size=5),
    sources,
    seqs,
)
def test_event_round_trips(asset, t_ns, category, name, severity, message, params, source, seq):
    event = Event(asset, t_ns, category, name, severity, message, params)
    got = round_trip(event, source, seq)
    assert got == dataclasses.replace(event, source=source, seq=seq)
    assert {k: type(v) for k, v in got.params.items()} == {k: type(v) for k, v in params.items()}


@given(
    t_nss,
    st.text(max_size=10),
    st.text(max_size=10),
    st.dictionaries(st.text(max_size=30), st.integers(-1, 2**63 - 1), max_size=6),
    st.integers(0, 2**63 - 1),
    names,
    seqs,
)
def test_heartbeat_round_trips(t_ns, role, status, last_seq, dropped, source, seq):
    beat = Heartbeat(t_ns, role, status, last_seq, dropped)
    got = round_trip(beat, source, seq)  # the topic names the source, so it must be given
    assert got == Heartbeat(t_ns, role, status, last_seq, dropped, source=source, seq=seq)


stream_stats = st.builds(
    StreamStats,
    topic=st.text(max_size=30),
    source=st.text(max_size=10),
    received=st.integers(0, 2**63 - 1),
    gaps=st.integers(0, 2**63 - 1),
    rate_hz=st.floats(allow_nan=False, min_value=0.0),
    rejected=st.integers(0, 2**31),
    out_of_range=st.integers(0, 2**31),
    last_t_ns=t_nss,
)


@given(
    t_nss,
    st.lists(stream_stats, max_size=5),
    st.dictionaries(st.sampled_from(REJECT_REASONS), st.integers(0, 2**40)),
    names,
    seqs,
)
def test_bus_stats_round_trip(t_ns, streams, rejects, source, seq):
    stats = BusStats(t_ns, tuple(streams), rejects)
    got = round_trip(stats, source, seq)
    assert got == BusStats(t_ns, tuple(streams), rejects, source=source, seq=seq)


def test_encode_refuses_what_is_not_a_message():
    with pytest.raises(TypeError, match="not a bus message"):
        encode({"kind": "obs"})  # type: ignore[arg-type]


# --- decode: one test per reject reason ---------------------------------------------------------


def good_frames() -> list[bytes]:
    return encode(Observation("rig", "imu", 5, np.zeros(3, "<f4")), source="src", seq=7)


def with_envelope(**changes) -> list[bytes]:
    frames = good_frames()
    env = msgpack.unpackb(frames[1])
    for key, value in changes.items():
        if value is ...:
            del env[key]
        else:
            env[key] = value
    return [frames[0], msgpack.packb(env), *frames[2:]]


def reason_of(frames) -> ProtocolError:
    with pytest.raises(ProtocolError) as info:
        decode(frames)
    assert info.value.reason in REJECT_REASONS
    return info.value


def test_too_few_frames_is_frame_count():
    assert reason_of([]).reason == "frame_count"
    assert reason_of([b"obs.rig.imu"]).reason == "frame_count"


def test_missing_or_extra_buffer_is_frame_count():
    frames = good_frames()
    for broken in (frames[:2], [*frames, b"extra"]):
        err = reason_of(broken)
        assert (err.reason, err.topic, err.source) == ("frame_count", "obs.rig.imu", "src")


def test_non_utf8_topic_is_bad_topic():
    frames = good_frames()
    err = reason_of([b"obs.\xff\xfe", *frames[1:]])
    assert (err.reason, err.topic) == ("bad_topic", "obs.\\xff\\xfe")  # still named in logs


@pytest.mark.parametrize("envelope", [b"\xc1garbage", b"", b"\x92\x01", msgpack.packb([1, 2]) + b"x"])
def test_garbage_envelope_is_not_msgpack(envelope):
    err = reason_of([b"obs.rig.imu", envelope])
    assert (err.reason, err.topic) == ("not_msgpack", "obs.rig.imu")


def test_envelope_that_is_not_a_map_is_not_msgpack():
    assert reason_of([b"obs.rig.imu", msgpack.packb([1, 2, 3])]).reason == "not_msgpack"


@pytest.mark.parametrize("version", [0, PROTOCOL_VERSION + 1, "1", None, ...])
def test_other_protocol_version_is_bad_version(version):
    err = reason_of(with_envelope(v=version))
    assert (err.reason, err.source) == ("bad_version", "src")
    assert repr(version if version is not ... else None) in err.detail


@pytest.mark.parametrize("kind", ["telemetry", None, 3, [1], ...])
def test_unknown_kind(kind):
    assert reason_of(with_envelope(kind=kind)).reason == "unknown_kind"


@pytest.mark.parametrize(
    "arrays",
    [
        "values",
        [["values", "<f4"]],
        [["values", "not-a-dtype", [3]]],
        [["values", ">f4", [3]]],
        [["values", "|O", [3]]],
        [["values", "<U1", [3]]],
        [["values", "<f4", [-3]]],
        [["values", "<f4", 3]],
        [["other", "<f4", [3]]],
        [[["unhashable"], "<f4", [3]]],
        [["values", "<f4", [math.inf]]],
    ],
)
def test_bad_array_descriptor_is_bad_array(arrays):
    assert reason_of(with_envelope(arrays=arrays)).reason == "bad_array"


def test_buffer_size_not_dtype_times_shape_is_array_size():
    frames = good_frames()
    for buffer in (frames[2][:-1], frames[2] + b"\0", b""):
        err = reason_of([*frames[:2], buffer])
        assert err.reason == "array_size"
        assert "12" in err.detail and "<f4" in err.detail


@pytest.mark.parametrize(
    "changes",
    [
        {"asset": ...},
        {"asset": "has.dot"},
        {"t_ns": -1},
        {"t_ns": "now"},
        {"source": "bad source"},
        {"seq": -5},
        {"schema_id": 3},
    ],
)
def test_bad_field(changes):
    err = reason_of(with_envelope(**changes))
    assert err.reason == "bad_field"


def test_schema_with_unconvertible_shape_is_bad_field():
    frames = encode(StreamSchema("rig", "imu", "vector", "<f4", (1,), 10.0, (SensorSpec("a", "m"),)))
    env = msgpack.unpackb(frames[1])
    for shape in ([math.inf], [math.nan], "x", [[1]]):
        assert reason_of([frames[0], msgpack.packb({**env, "shape": shape})]).reason == "bad_field"


def test_topic_frame_disagreeing_with_envelope_is_topic_mismatch():
    frames = good_frames()
    err = reason_of([b"obs.rig.other", *frames[1:]])
    assert (err.reason, err.topic, err.source) == ("topic_mismatch", "obs.rig.other", "src")
    assert "obs.rig.imu" in err.detail


def test_error_message_names_reason_topic_and_source():
    err = reason_of([b"obs.rig.other", *good_frames()[1:]])
    assert "topic_mismatch" in str(err) and "'obs.rig.other'" in str(err) and "'src'" in str(err)


# --- fuzz: decode never raises anything but ProtocolError -------------------------------------

msgpack_values = st.recursive(
    st.one_of(st.none(), st.booleans(), i64, st.floats(), st.text(max_size=8), st.binary(max_size=8)),
    lambda inner: st.one_of(
        st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=5), inner, max_size=3)
    ),
    max_leaves=8,
)


def _samples():
    pixels = np.zeros((2, 2, 3), "|u1")
    return [
        vector := StreamSchema(
            "r", "s", "vector", "<f4", (1,), 10.0, (SensorSpec("a", "m"),), (ActuatorSpec("u", "N", -1, 1),)
        ),
        Observation("r", "s", 1, pixels, schema_id=vector.schema_id),
        Action("r", 1, np.zeros(2)),
        Prediction("r", "s", 1, 0, np.zeros(2), np.zeros((2, 1)), np.zeros((2, 1)), np.zeros((2, 1))),
        Event("r", 1, "fault", "x", params={"k": 1}),
        Heartbeat(1, last_seq={"obs.r.s": 3}),
        BusStats(1, (StreamStats("t", "s", 1, 0, 1.0),), {"nan": 1}),
    ]


@settings(max_examples=300)
@given(st.sampled_from(range(7)), st.data())
def test_decode_raises_only_protocol_error_on_mutated_envelopes(index, data):
    frames = encode(_samples()[index], source="src", seq=1)
    env = msgpack.unpackb(frames[1])
    key = data.draw(st.sampled_from(sorted(env)))
    env[key] = data.draw(msgpack_values)
    try:
        decode([frames[0], msgpack.packb(env), *frames[2:]])
    except ProtocolError as exc:
        assert exc.reason in REJECT_REASONS


@given(st.lists(st.binary(max_size=40), max_size=5))
def test_decode_raises_only_protocol_error_on_random_frames(frames):
    try:
        decode(frames)
    except ProtocolError as exc:
        assert exc.reason in REJECT_REASONS


def test_envelope_with_broken_utf8_string_is_not_msgpack():
    """Found by fuzzing: a msgpack str whose bytes are not UTF-8 (here inside a fixmap)."""
    with pytest.raises(ProtocolError) as caught:
        decode([b"", b"\xaa\x00\x00\x00\x00\x00\x00\x00\x00\x00\x80"])
    assert caught.value.reason == "not_msgpack"


# --- the decoder's hot path for known streams gives the same verdicts as the full path ------------


def test_known_stream_fast_path_decodes_identically():
    first = decode(good_frames())  # the full path; the stream is now known
    again = decode(good_frames())  # the hot path
    assert type(again) is Observation
    assert dataclasses.astuple(again)[:3] == dataclasses.astuple(first)[:3]
    assert (again.schema_id, again.source, again.seq) == (first.schema_id, first.source, first.seq)
    np.testing.assert_array_equal(again.values, first.values)
    assert again.values.dtype == first.values.dtype and again.values.shape == first.values.shape
    image = Observation("rig", "cam", 9, np.arange(12, dtype=np.uint8).reshape(2, 2, 3))
    decode(encode(image, source="src", seq=1))
    hot = decode(encode(image, source="src", seq=2))
    assert hot.values.shape == (2, 2, 3) and hot.seq == 2
    np.testing.assert_array_equal(hot.values, image.values)


@pytest.mark.parametrize(
    ("broken", "reason"),
    [
        (lambda f: f[:2], "frame_count"),
        (lambda f: [*f, b"extra"], "frame_count"),
        (lambda f: [*f[:2], f[2][:-1]], "array_size"),
        (lambda f: [b"obs.rig.other", *f[1:]], "topic_mismatch"),
        (lambda f: with_envelope(v=PROTOCOL_VERSION + 1), "bad_version"),
        (lambda f: with_envelope(t_ns=-1), "bad_field"),
        (lambda f: with_envelope(seq=-5), "bad_field"),
        (lambda f: with_envelope(source="bad source"), "bad_field"),
        (lambda f: with_envelope(arrays=[["values", ">f4", [3]]]), "bad_array"),
        (lambda f: with_envelope(arrays=[["other", "<f4", [3]]]), "bad_array"),
    ],
)
def test_known_stream_still_rejects_every_bad_frame(broken, reason):
    decode(good_frames())  # warm: this stream and its descriptor are cached
    assert reason_of(broken(good_frames())).reason == reason
