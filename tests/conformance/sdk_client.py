"""Join a simulator stream with Zoom's official RTMS SDK (PyPI `rtms`) and
report what the SDK sees, one JSON object per line on stdout.

Usage: sdk_client.py '{"engagement_id":…,"rtms_stream_id":…,"server_urls":…,
                       "client":…,"secret":…,"max_seconds":…}'
The CA comes from ZM_RTMS_CA (the SDK verifies the certificate and host name).
Lines: {"type":"join","reason":N} {"type":"audio","ts":…,"b64":…,"user_id":…}
{"type":"transcript","ts":…,"text":…} {"type":"session","op":N}
{"type":"leave","reason":N} {"type":"timeout"}
Writing "leave" on stdin makes the client leave.
"""

import base64
import json
import sys
import threading

import rtms

args = json.loads(sys.argv[1])
lock = threading.Lock()
done = threading.Event()


def emit(**kv):
    with lock:
        sys.stdout.write(json.dumps(kv) + "\n")
        sys.stdout.flush()


client = rtms.Client()
client.set_audio_params(
    rtms.AudioParams(
        content_type=2, codec=1, sample_rate=1, channel=1, data_opt=1, duration=20, frame_size=320
    )
)


def on_join(reason):
    emit(type="join", reason=reason)
    if reason != 0:
        done.set()


def on_leave(reason):
    emit(type="leave", reason=reason)
    done.set()


def on_audio(data, size, timestamp, metadata):
    emit(type="audio", ts=timestamp, size=size, b64=base64.b64encode(bytes(data)).decode(), user_id=metadata.userId)


def on_transcript(data, size, timestamp, metadata):
    text = bytes(data).decode("utf-8", "replace")
    emit(type="transcript", ts=timestamp, text=text)


def on_session(op, session):
    emit(type="session", op=op)


client.on_join_confirm(on_join)
client.on_leave(on_leave)
client.on_audio_data(on_audio)
client.on_transcript_data(on_transcript)
client.on_session_update(on_session)


def read_stdin():
    for line in sys.stdin:
        if line.strip() == "leave":
            client.leave()
            emit(type="left")
            done.set()
            return


threading.Thread(target=read_stdin, daemon=True).start()

client.join(
    engagement_id=args["engagement_id"],
    rtms_stream_id=args["rtms_stream_id"],
    server_urls=args["server_urls"],
    client=args["client"],
    secret=args["secret"],
)

if not done.wait(args.get("max_seconds", 60)):
    emit(type="timeout")
