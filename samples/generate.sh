#!/usr/bin/env bash
# Generates the demo calls in samples/calls/ and the manifest samples/calls.toml.
#
# Five short stereo telephone calls at 8 kHz: channel 1 = agent, channel 2 =
# customer, the parties taking turns (the other channel is digital silence
# while one speaks). Speech is synthesised with espeak-ng and assembled with
# sox. The script, the audio and the manifest all come from the tables below,
# so the manifest's `script` and timings cannot drift from the audio.
#
# Deterministic for a given espeak-ng and sox version (sox runs with -R and
# without dither). Re-runnable: outputs are rebuilt from scratch each time.
# At the end every file is checked (format, length, which channel speaks when).
#
# Usage: samples/generate.sh          (from anywhere)
# Needs: espeak-ng, sox, soxi         (Debian: apt-get install -y espeak-ng sox)
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
OUT_DIR="$HERE/calls"
MANIFEST="$HERE/calls.toml"

RATE=8000
AGENT_VOICE="en-us+m3"
CUSTOMER_VOICE="en-gb+f3"
WPM=150
LEAD_MS=300     # silence before the first turn
PAUSE_MS=400    # silence between turns
TAIL_MS=300     # silence after the last turn
OPT_OUT_AFTER_MS=200  # KiOptOut lands this long after the customer's objection ends
MIN_CALL_MS=8000
MAX_CALL_MS=14000

for tool in espeak-ng sox soxi; do
  command -v "$tool" >/dev/null || { echo "generate.sh: $tool not found (apt-get install -y espeak-ng sox)" >&2; exit 1; }
done

# sox: -R repeatable, -D no dither (silence stays exact zero), -V1 errors only.
SOX=(sox -R -D -V1)

# ---------------------------------------------------------------------------
# The calls. One function per call sets the metadata and the turns.
# Lines must not contain double quotes or backslashes (they go into TOML
# basic strings verbatim); the check below enforces it.
# A turn whose text starts with "!" is the customer's KI objection: its end
# time decides ki_opt_out_at_ms (the "!" is not spoken).
# ---------------------------------------------------------------------------

call_1() {
  ID="demo-0001"; CODEC="pcma"; DIRECTION="inbound"; DESK="customer_center"
  SERVICE="payments"; ADVISOR="adv-1042"; CUSTOMER="cust-7f3a9c"
  KI=false; INFORMED=false
  SUMMARY="A customer calls the customer center about a card payment charged twice, and the agent disputes the duplicate charge."
  TURNS=(
    "agent|Customer centre, good morning. How can I help?"
    "customer|A card payment of four hundred kroner was taken twice."
    "agent|I see both. I will dispute the duplicate for you."
    "customer|Great, thank you."
  )
}

call_2() {
  ID="demo-0002"; CODEC="pcmu"; DIRECTION="inbound"; DESK="markets"
  SERVICE="investment_advice"; ADVISOR="adv-2217"; CUSTOMER="cust-41b8e2"
  KI=false; INFORMED=false
  SUMMARY="A customer calls the Markets desk and, after advice, buys fifty thousand kroner of units in a global index fund."
  TURNS=(
    "agent|Markets desk, hello."
    "customer|I want to buy units in the global index fund."
    "agent|How much, and have you read the key facts?"
    "customer|Fifty thousand kroner, and yes."
    "agent|Thanks, the order is placed."
  )
}

call_3() {
  ID="demo-0003"; CODEC="pcma"; DIRECTION="outbound"; DESK="private_banking"
  SERVICE="savings"; ADVISOR="adv-3305"; CUSTOMER="cust-c02d51"
  KI=true; INFORMED=true
  SUMMARY="A Private Banking advisor tells the client that AI takes notes and agrees a monthly fund savings plan of two thousand kroner for the client's daughter."
  TURNS=(
    "agent|Private Banking here, an AI takes notes on this call."
    "customer|That is fine."
    "agent|For your daughter, a monthly fund savings plan could suit you."
    "customer|Let us start with two thousand kroner a month."
  )
}

call_4() {
  ID="demo-0004"; CODEC="pcmu"; DIRECTION="inbound"; DESK="customer_center"
  SERVICE="loan"; ADVISOR="adv-1187"; CUSTOMER="cust-9e6a07"
  KI=true; INFORMED=true
  SUMMARY="A customer asks about moving a mortgage, objects to AI note-taking mid-call, and the advisor switches KI off while the recording continues."
  TURNS=(
    "agent|Loans, an AI takes notes on this call."
    "customer|I want to move my mortgage here."
    "agent|What is the balance?"
    "customer|!Wait, I don't want the AI to take notes."
    "agent|The AI is off, the call is still recorded."
  )
}

call_5() {
  ID="demo-0005"; CODEC="l16"; DIRECTION="inbound"; DESK="customer_center"
  SERVICE="general"; ADVISOR="adv-1042"; CUSTOMER="cust-5d2f8b"
  KI=true; INFORMED=false
  SUMMARY="A customer asks when the town branch opens; KI was requested but the customer was not told, so KI must not run on this call."
  TURNS=(
    "agent|Customer centre, good morning."
    "customer|Hi. When does the branch in town open tomorrow?"
    "agent|It opens at nine o'clock."
    "customer|Perfect, thanks. Bye."
  )
}

CALLS=(call_1 call_2 call_3 call_4 call_5)

# ---------------------------------------------------------------------------

WORK="$(mktemp -d)"
trap 'rm -rf "$WORK" "$MANIFEST.tmp"' EXIT

samples_of() { soxi -s "$1"; }
ms_of_samples() { echo $(( $1 * 1000 / RATE )); }

# silence <file> <samples>: mono 16-bit digital silence.
silence() {
  "${SOX[@]}" -r "$RATE" -c 1 -b 16 -e signed-integer -n "$1" trim 0 "$2s"
}

# speak <voice> <text> <out>: speech at 8 kHz mono 16-bit, leading and trailing
# silence trimmed, peak-normalised to -3 dBFS.
speak() {
  local voice="$1" text="$2" out="$3"
  espeak-ng -v "$voice" -s "$WPM" -w "$WORK/raw.wav" "$text"
  "${SOX[@]}" "$WORK/raw.wav" -r "$RATE" -c 1 -b 16 -e signed-integer "$out" \
    silence 1 0.02 0.5% reverse silence 1 0.02 0.5% reverse norm -3
}

toml_str() {
  case "$1" in *'"'*|*'\'*) echo "generate.sh: no quotes or backslashes in manifest strings: $1" >&2; exit 1;; esac
  printf '"%s"' "$1"
}

mkdir -p "$OUT_DIR"
rm -f "$OUT_DIR"/*.wav

{
  echo "# Demo calls for \`opptak demo\`. Generated by samples/generate.sh: edit the script, not this file."
  echo "# Audio: 8 kHz stereo, channel 1 = agent, channel 2 = customer; voices $AGENT_VOICE (agent), $CUSTOMER_VOICE (customer), $WPM wpm."
  echo "# The comment above each script gives each line's start-end in ms from the call start."
} >"$MANIFEST.tmp"

for call in "${CALLS[@]}"; do
  "$call"
  agent_parts=("$WORK/lead.wav"); customer_parts=("$WORK/lead.wav")
  lead_samples=$(( LEAD_MS * RATE / 1000 ))
  pause_samples=$(( PAUSE_MS * RATE / 1000 ))
  tail_samples=$(( TAIL_MS * RATE / 1000 ))
  silence "$WORK/lead.wav" "$lead_samples"
  silence "$WORK/pause.wav" "$pause_samples"
  silence "$WORK/tail.wav" "$tail_samples"

  pos=$lead_samples
  opt_out_ms=""
  script_lines=()
  timings=()
  for i in "${!TURNS[@]}"; do
    role="${TURNS[$i]%%|*}"
    text="${TURNS[$i]#*|}"
    objection=false
    if [[ "$text" == '!'* ]]; then objection=true; text="${text#!}"; fi
    case "$role" in
      agent) voice="$AGENT_VOICE" ;;
      customer) voice="$CUSTOMER_VOICE" ;;
      *) echo "generate.sh: $ID: unknown role $role" >&2; exit 1 ;;
    esac
    speak "$voice" "$text" "$WORK/$ID-$i.wav"
    n=$(samples_of "$WORK/$ID-$i.wav")
    silence "$WORK/$ID-$i-quiet.wav" "$n"
    if [[ "$role" == agent ]]; then
      agent_parts+=("$WORK/$ID-$i.wav"); customer_parts+=("$WORK/$ID-$i-quiet.wav")
    else
      agent_parts+=("$WORK/$ID-$i-quiet.wav"); customer_parts+=("$WORK/$ID-$i.wav")
    fi
    start_ms=$(ms_of_samples "$pos")
    pos=$(( pos + n ))
    end_ms=$(ms_of_samples "$pos")
    timings+=("$role:$pos:$n")
    script_lines+=("$role: $text")
    if $objection; then
      [[ "$role" == customer ]] || { echo "generate.sh: $ID: the objection must be the customer's" >&2; exit 1; }
      opt_out_ms=$(( end_ms + OPT_OUT_AFTER_MS ))
    fi
    echo "$start_ms-$end_ms" >>"$WORK/$ID.times"
    if (( i + 1 < ${#TURNS[@]} )); then
      agent_parts+=("$WORK/pause.wav"); customer_parts+=("$WORK/pause.wav")
      pos=$(( pos + pause_samples ))
    fi
  done
  agent_parts+=("$WORK/tail.wav"); customer_parts+=("$WORK/tail.wav")
  pos=$(( pos + tail_samples ))

  "${SOX[@]}" "${agent_parts[@]}" "$WORK/$ID-agent.wav"
  "${SOX[@]}" "${customer_parts[@]}" "$WORK/$ID-customer.wav"
  case "$CODEC" in
    pcmu) enc=(-e u-law -b 8) ;;
    pcma) enc=(-e a-law -b 8) ;;
    l16) enc=(-e signed-integer -b 16) ;;
    *) echo "generate.sh: $ID: unknown codec $CODEC" >&2; exit 1 ;;
  esac
  "${SOX[@]}" -M "$WORK/$ID-agent.wav" "$WORK/$ID-customer.wav" -r "$RATE" -c 2 "${enc[@]}" "$OUT_DIR/$ID.wav"
  # Keep the turn table for the checks below: role, start sample, length.
  printf '%s\n' "${timings[@]}" >"$WORK/$ID.turns"

  total_ms=$(ms_of_samples "$pos")
  if (( total_ms < MIN_CALL_MS || total_ms > MAX_CALL_MS )); then
    echo "generate.sh: $ID is ${total_ms} ms, outside ${MIN_CALL_MS}-${MAX_CALL_MS} ms: shorten or lengthen its lines" >&2
    exit 1
  fi
  if $KI && ! $INFORMED && [[ -n "$opt_out_ms" ]]; then
    echo "generate.sh: $ID: an opt-out needs KI running (ki_enabled and customer_informed)" >&2; exit 1
  fi

  {
    echo
    echo "[[call]]"
    echo "id = $(toml_str "$ID")"
    echo "file = $(toml_str "calls/$ID.wav")"
    echo "codec = $(toml_str "$CODEC")"
    echo "direction = $(toml_str "$DIRECTION")"
    echo "desk = $(toml_str "$DESK")"
    echo "service_category = $(toml_str "$SERVICE")"
    echo "advisor_id = $(toml_str "$ADVISOR")"
    echo "customer_ref = $(toml_str "$CUSTOMER")"
    echo "ki_enabled = $KI"
    echo "customer_informed = $INFORMED"
    if [[ -n "$opt_out_ms" ]]; then echo "ki_opt_out_at_ms = $opt_out_ms"; fi
    echo "summary = $(toml_str "$SUMMARY")"
    echo "# duration ${total_ms} ms; line times (ms): $(paste -sd' ' "$WORK/$ID.times")"
    echo "script = ["
    for line in "${script_lines[@]}"; do echo "  $(toml_str "$line"),"; done
    echo "]"
  } >>"$MANIFEST.tmp"
done

# ---------------------------------------------------------------------------
# Checks: format, both channels speak, and each turn is on its own channel.
# ---------------------------------------------------------------------------

# rms <file> <channel> <start sample> <samples>: RMS amplitude (0..1).
rms() {
  "${SOX[@]}" "$1" -n remix "$2" trim "$3s" "$4s" stat 2>&1 | awk '/RMS +amplitude/ {print $3}'
}

fail=0
for call in "${CALLS[@]}"; do
  "$call"
  f="$OUT_DIR/$ID.wav"
  want_enc=""; want_tag=""
  case "$CODEC" in
    pcmu) want_enc="u-law"; want_tag=7 ;;
    pcma) want_enc="A-law"; want_tag=6 ;;
    l16) want_enc="Signed Integer PCM"; want_tag=1 ;;
  esac
  rate=$(soxi -r "$f"); chans=$(soxi -c "$f"); enc=$(soxi -e "$f")
  tag=$(od -An -tu2 -j20 -N2 "$f" | tr -d ' ')
  if [[ "$rate" != "$RATE" || "$chans" != 2 || "$enc" != *"$want_enc"* || "$tag" != "$want_tag" ]]; then
    echo "CHECK FAILED $ID: rate=$rate channels=$chans encoding=$enc tag=$tag (want $RATE, 2, $want_enc, $want_tag)" >&2
    fail=1
  fi
  # Each turn: the speaker's channel is loud, the other one is silent.
  while IFS=: read -r role end n; do
    start=$(( end - n ))
    a=$(rms "$f" 1 "$start" "$n"); c=$(rms "$f" 2 "$start" "$n")
    if [[ "$role" == agent ]]; then speaker=$a; other=$c; else speaker=$c; other=$a; fi
    if ! awk -v s="$speaker" -v o="$other" 'BEGIN { exit !(s > 0.02 && o < 0.001) }'; then
      echo "CHECK FAILED $ID: $role turn at sample $start: speaker rms $speaker, other channel rms $other" >&2
      fail=1
    fi
  done <"$WORK/$ID.turns"
  printf '%s  %-7s %s Hz  %s ch  tag %s  %6.2f s  %7d bytes\n' \
    "$ID" "$CODEC" "$rate" "$chans" "$tag" "$(soxi -D "$f")" "$(stat -c %s "$f")"
done
(( fail == 0 )) || { echo "generate.sh: checks failed" >&2; exit 1; }

mv "$MANIFEST.tmp" "$MANIFEST"
echo "total $(du -cb "$OUT_DIR"/*.wav | tail -1 | cut -f1) bytes; manifest $MANIFEST"
