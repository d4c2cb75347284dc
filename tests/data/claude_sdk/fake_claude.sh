#!/bin/sh
# A stand-in for the Claude Code CLI in stream-json mode (tests of the claude_sdk
# plugin). FAKE_CLAUDE_MODE chooses what it does:
#   echo (default)  per user message read: the init line, one assistant text
#                   "turn N: MESSAGE" (N counts the messages this process read;
#                   "resumed " first when started with --resume), the result line;
#                   with --include-partial-messages the text also comes first as
#                   stream events in two pieces, as the CLI sends them
#   exit            writes "fake failure" to stderr and exits 3 at once
#   init-then-exit  writes the init line, then exits 1
#   hang            writes the init line, then waits 30 s
#   error-result    answers each message with an error result
#   env             answers each message with the names of its environment variables
#   args            answers each message with its own arguments, space-separated
#   stall           answers the first message with its text, then waits 30 s
#                   before the result
#   in-use          refuses --session-id as the CLI does for a session it has
#                   ("Session ID ... is already in use."); echoes with --resume
mode="${FAKE_CLAUDE_MODE:-echo}"
session="fake-session"
resumed=""
model="claude-fake-1"
partial=""
previous=""
for arg in "$@"; do
    [ "$arg" = "--include-partial-messages" ] && partial=1
    case "$previous" in
        --session-id) session="$arg" ;;
        --resume) session="$arg"; resumed="resumed " ;;
        --model) model="$arg" ;;
    esac
    case "$arg" in
        --session-id=*) session="${arg#*=}" ;;
        --resume=*) session="${arg#*=}"; resumed="resumed " ;;
        --model=*) model="${arg#*=}" ;;
    esac
    previous="$arg"
done
init() {
    printf '{"type":"system","subtype":"init","cwd":"%s","session_id":"%s","model":"%s","tools":[]}\n' "$PWD" "$session" "$model"
}
case "$mode" in
    exit) echo "fake failure" >&2; exit 3 ;;
    init-then-exit) init; exit 1 ;;
    hang) init; exec sleep 30 ;;
    in-use)
        if [ -z "$resumed" ]; then
            echo "Error: Session ID $session is already in use." >&2
            exit 1
        fi ;;
esac
turn=0
while IFS= read -r line; do
    turn=$((turn + 1))
    text=$(printf '%s' "$line" | sed 's/.*"content":"\([^"]*\)".*/\1/')
    [ "$mode" = "args" ] && text=" $* "
    [ "$mode" = "env" ] && text=" $(env | sed -n 's/^\([A-Za-z_][A-Za-z0-9_]*\)=.*/\1/p' | tr '\n' ' ')"
    init
    if [ "$mode" = "error-result" ]; then
        printf '{"type":"result","subtype":"success","is_error":true,"result":"API Error: 401 invalid x-api-key","session_id":"%s","total_cost_usd":0,"usage":{"input_tokens":0,"output_tokens":0}}\n' "$session"
        continue
    fi
    printf '{"type":"system","subtype":"thinking_tokens","estimated_tokens":4,"session_id":"%s"}\n' "$session"
    if [ -n "$partial" ]; then
        event() {
            printf '{"type":"stream_event","event":%s,"session_id":"%s","api_message_id":"msg_fake_%s"}\n' "$1" "$session" "$turn"
        }
        event "{\"type\":\"message_start\",\"message\":{\"id\":\"msg_fake_$turn\",\"model\":\"$model\",\"content\":[]}}"
        event '{"type":"content_block_start","index":0,"content_block":{"type":"text","text":""}}'
        event "{\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"text_delta\",\"text\":\"${resumed}turn $turn: \"}}"
        event "{\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"text_delta\",\"text\":\"$text\"}}"
    fi
    printf '{"type":"assistant","message":{"id":"msg_fake_%s","model":"%s","role":"assistant","content":[{"type":"text","text":"%sturn %s: %s"}]},"session_id":"%s"}\n' "$turn" "$model" "$resumed" "$turn" "$text" "$session"
    [ -n "$partial" ] && event '{"type":"content_block_stop","index":0}'
    # exec: the proxy kills the process it started, which must be the one waiting.
    [ "$mode" = "stall" ] && exec sleep 30
    printf '{"type":"result","subtype":"success","is_error":false,"result":"done","stop_reason":"end_turn","session_id":"%s","total_cost_usd":0.0012,"usage":{"input_tokens":10,"output_tokens":5,"cache_read_input_tokens":2}}\n' "$session"
done
