#!/usr/bin/env bash
# Generates the KI acceptance-test corpus: 20 synthetic English bank calls and
# their manifest, OUT_DIR/calls/ki-00NN.wav and OUT_DIR/calls.toml.
#
# Same approach as samples/generate.sh: stereo calls, channel 1 = agent,
# channel 2 = customer, the parties taking turns (the other channel is digital
# silence while one speaks). Speech is synthesised with espeak-ng and assembled
# with sox. The script, the audio and the manifest all come from the tables
# below, so the manifest's `script`, `topics` and timings cannot drift from the
# audio. Nothing here is committed but this script: the WAVs and the manifest
# are made at test time.
#
# Deterministic for a given espeak-ng and sox version (sox runs with -R and
# without dither). Re-runnable: OUT_DIR's ki-*.wav and calls.toml are rebuilt
# from scratch each time. At the end every file is checked (format, length,
# which channel speaks when) and the manifest is written only if all pass.
#
# Usage: tests/ki_corpus/generate.sh OUT_DIR [RATE] [CODEC]
#   RATE  16000 (default) or 8000
#   CODEC l16 (default; 16-bit linear PCM, WAV format tag 1), or at 8000 Hz
#         pcma (G.711 A-law, tag 6) or pcmu (G.711 mu-law, tag 7)
# Environment: KI_CORPUS_JOBS  calls built in parallel (default: nproc)
# Needs: espeak-ng, sox, soxi         (Debian: apt-get install -y espeak-ng sox)
set -euo pipefail

usage() { echo "usage: $0 OUT_DIR [RATE 16000|8000] [CODEC l16|pcma|pcmu]" >&2; exit 2; }
[[ $# -ge 1 && $# -le 3 ]] || usage
OUT_DIR="$1"
RATE="${2:-16000}"
CODEC="${3:-l16}"
case "$RATE" in 8000|16000) ;; *) echo "generate.sh: RATE must be 8000 or 16000, not $RATE" >&2; exit 2 ;; esac
case "$CODEC" in
  l16) ;;
  pcma|pcmu) [[ "$RATE" == 8000 ]] || { echo "generate.sh: $CODEC (G.711) needs RATE 8000" >&2; exit 2; } ;;
  *) echo "generate.sh: CODEC must be l16, pcma or pcmu, not $CODEC" >&2; exit 2 ;;
esac

AGENT_VOICE="en-us+m3"
CUSTOMER_VOICE="en-gb+f3"
WPM=150
LEAD_MS=300     # silence before the first turn
PAUSE_MS=400    # silence between turns
TAIL_MS=300     # silence after the last turn
MIN_CALL_MS=10000
MAX_CALL_MS=25000
JOBS="${KI_CORPUS_JOBS:-$(nproc 2>/dev/null || echo 2)}"

for tool in espeak-ng sox soxi; do
  command -v "$tool" >/dev/null || { echo "generate.sh: $tool not found (apt-get install -y espeak-ng sox)" >&2; exit 1; }
done

# sox: -R repeatable, -D no dither (silence stays exact zero), -V1 errors only.
SOX=(sox -R -D -V1)

TOPIC_IDS=" mortgage_loans cards online_mobile_bank_login savings_funds investments_securities payments_transfers fraud_security insurance pension complaints other "

# ---------------------------------------------------------------------------
# The calls. One function per call sets the metadata and the turns.
#
# Rules for the lines (checked below):
# - no double quotes or backslashes (they go into TOML basic strings verbatim);
# - no digits: numbers are written as they are spoken ("four hundred",
#   "four one two, three four"), so the script is the exact reference text;
# - 4 to 6 turns, the call 10 to 25 s long.
# KI calls (KI=true, INFORMED=true): the agent's first line says an AI takes
# notes ("We use an AI to take notes on this call": Whisper tiny.en hears
# "An AI takes notes" as "and I take notes"). TOPICS are the ids from
# crates/opptak-domain/taxonomy/topics.toml the call is about; the dialogue
# uses the taxonomy's English phrases so that the phrase classifier finds
# exactly these (measure.py --topics checks that on the script). No call
# opts out of KI. The wording avoids what tiny.en mishears in these voices
# (see README.md): re-measure with measure.py after changing a line.
# All identities, numbers and addresses are made up.
# ---------------------------------------------------------------------------

call_1() {
  ID="ki-0001"; DIRECTION="inbound"; DESK="customer_center"; SERVICE="loan"
  ADVISOR="adv-1042"; CUSTOMER="cust-3a91f0"; KI=true; INFORMED=true
  TOPICS=(mortgage_loans)
  SUMMARY="A customer asks to move a mortgage of about two million kroner to the bank; the agent offers a lower interest rate and will send an offer."
  TURNS=(
    "agent|Good morning, and welcome. We use an AI to take notes on this call."
    "customer|Hello. I would like to move my mortgage to your bank."
    "agent|Happy to help. How much is left on the loan?"
    "customer|About two million, and the interest rate is five percent."
    "agent|We can offer four percent. I will send you an offer today."
  )
}

call_2() {
  ID="ki-0002"; DIRECTION="inbound"; DESK="customer_center"; SERVICE="payments"
  ADVISOR="adv-1187"; CUSTOMER="cust-8c2e47"; KI=true; INFORMED=true
  TOPICS=(cards)
  SUMMARY="A customer's debit card no longer works; the agent finds it damaged and orders a new card with the same pin code."
  TURNS=(
    "agent|Hello, customer service. We use an AI to take notes on this call."
    "customer|Hi. My debit card does not work when I try to pay."
    "agent|I can see the card is damaged. I will order a new card for you."
    "customer|Thank you. Will I get a new pin code?"
    "agent|No, you keep the same code. The new card comes in five days."
  )
}

call_3() {
  ID="ki-0003"; DIRECTION="inbound"; DESK="customer_center"; SERVICE="general"
  ADVISOR="adv-1042"; CUSTOMER="cust-f06b13"; KI=true; INFORMED=true
  TOPICS=(online_mobile_bank_login)
  SUMMARY="A customer is locked out of the banking app; after confirming the phone number the agent unlocks it and the customer chooses a new password."
  TURNS=(
    "agent|Good afternoon, customer service. We use an AI to take notes on this call."
    "customer|Hello. I cannot log in on my phone, and now I am locked out of the app."
    "agent|I can unlock it for you. Can you confirm your phone number?"
    "customer|Yes, it is four one two, three four, five six seven."
    "agent|Thank you. You can now log in and choose a new password."
  )
}

call_4() {
  ID="ki-0004"; DIRECTION="outbound"; DESK="private_banking"; SERVICE="savings"
  ADVISOR="adv-3305"; CUSTOMER="cust-51d7a2"; KI=true; INFORMED=true
  TOPICS=(savings_funds)
  SUMMARY="A Private Banking advisor calls and sets up monthly savings of one thousand kroner in an index fund for the client's son."
  TURNS=(
    "agent|Hello, this is your advisor. We use an AI to take notes on this call."
    "customer|Yes, hello. Thank you for calling."
    "agent|You wanted to start saving for your son. An index fund could suit you."
    "customer|Yes, let us save one thousand every month."
    "agent|Done. The savings plan starts next month."
  )
}

call_5() {
  ID="ki-0005"; DIRECTION="inbound"; DESK="markets"; SERVICE="investment_advice"
  ADVISOR="adv-2217"; CUSTOMER="cust-0e4c95"; KI=true; INFORMED=true
  TOPICS=(investments_securities)
  SUMMARY="A customer buys shares in a shipping company for twenty thousand kroner after the Markets desk checks the risk profile and the key information."
  TURNS=(
    "agent|Good morning, investment service. We use an AI to take notes on this call."
    "customer|Hello. I would like to purchase some shares in a shipping company."
    "agent|Your risk profile allows that. Have you read the key information?"
    "customer|Yes, I have. Please buy shares for twenty thousand."
    "agent|Thank you. Your order is placed."
  )
}

call_6() {
  ID="ki-0006"; DIRECTION="inbound"; DESK="customer_center"; SERVICE="payments"
  ADVISOR="adv-1187"; CUSTOMER="cust-a7793d"; KI=true; INFORMED=true
  TOPICS=(payments_transfers)
  SUMMARY="A customer makes an international payment to a sister in Spain from an account whose number is read out digit by digit."
  TURNS=(
    "agent|Customer service, hello. We use an AI to take notes on this call."
    "customer|Hi. I need to make an international payment to my sister in Spain."
    "agent|No problem. Which account should the money come from?"
    "customer|The account number is one two three four, five six, seven eight five zero one."
    "agent|Thank you. The transfer will arrive in two days."
  )
}

call_7() {
  ID="ki-0007"; DIRECTION="inbound"; DESK="customer_center"; SERVICE="general"
  ADVISOR="adv-1310"; CUSTOMER="cust-2b5e80"; KI=true; INFORMED=true
  TOPICS=(fraud_security)
  SUMMARY="A customer answered a strange text message and gave away a code; the agent treats it as fraud, closes access and advises a police report."
  TURNS=(
    "agent|Good evening, customer service. We use an AI to take notes on this call."
    "customer|I got a strange text message, and I think I gave away the code to someone."
    "agent|Thank you for calling so quickly. This looks like fraud, so I have closed your access."
    "customer|What should I do now?"
    "agent|Please make a police report. We will check your account for anything suspicious."
  )
}

call_8() {
  ID="ki-0008"; DIRECTION="inbound"; DESK="customer_center"; SERVICE="insurance"
  ADVISOR="adv-1455"; CUSTOMER="cust-c4f2d6"; KI=true; INFORMED=true
  TOPICS=(insurance)
  SUMMARY="A customer's suitcase was damaged on a flight; travel insurance covers it and the customer will send a claim with the receipt."
  TURNS=(
    "agent|Hello, insurance service. We use an AI to take notes on this call."
    "customer|Hi. My suitcase was damaged on the flight home. Does my travel insurance cover it?"
    "agent|Yes, you are covered. Please send us a claim with the receipt."
    "customer|Thank you, I will do that today."
    "agent|Good. You will get an answer within a week."
  )
}

call_9() {
  ID="ki-0009"; DIRECTION="outbound"; DESK="private_banking"; SERVICE="savings"
  ADVISOR="adv-3305"; CUSTOMER="cust-7d08be"; KI=true; INFORMED=true
  TOPICS=(pension)
  SUMMARY="A Private Banking advisor suggests individual pension savings for the client's retirement, twenty five thousand kroner a year with less tax."
  TURNS=(
    "agent|Good morning, this is your advisor. We use an AI to take notes on this call."
    "customer|Good morning. I have been thinking of my retirement."
    "agent|I think individual pension savings could be a good idea for you."
    "customer|How much can I put in each year?"
    "agent|You can put in twenty five thousand a year, and you pay less tax."
    "customer|Good, let us set that up."
  )
}

call_10() {
  ID="ki-0010"; DIRECTION="inbound"; DESK="customer_center"; SERVICE="general"
  ADVISOR="adv-1042"; CUSTOMER="cust-93e1c7"; KI=true; INFORMED=true
  TOPICS=(complaints)
  SUMMARY="A customer complains about a fee never agreed to; the agent finds it was the bank's mistake and refunds it."
  TURNS=(
    "agent|Customer service, good afternoon. We use an AI to take notes on this call."
    "customer|I want to make a complaint. You charged me a fee I never agreed to."
    "agent|I am sorry to hear that. You are right, the fee was a mistake."
    "customer|I am not happy about this. It is unfair."
    "agent|I understand. We will pay the fee back today."
  )
}

call_11() {
  ID="ki-0011"; DIRECTION="inbound"; DESK="customer_center"; SERVICE="general"
  ADVISOR="adv-1310"; CUSTOMER="cust-4f6a21"; KI=true; INFORMED=true
  TOPICS=(other)
  SUMMARY="A customer who has moved updates the email address and phone number, both read out."
  TURNS=(
    "agent|Hello, customer service. We use an AI to take notes on this call."
    "customer|Hi. I have moved, and I need to change my address and email."
    "agent|Of course. What is your new email address?"
    "customer|My email is tom dot berg at example dot com."
    "agent|Thank you. What is your phone number?"
    "customer|It is four eight two, one five, three six seven."
  )
}

call_12() {
  ID="ki-0012"; DIRECTION="outbound"; DESK="customer_center"; SERVICE="loan"
  ADVISOR="adv-1187"; CUSTOMER="cust-e5b390"; KI=true; INFORMED=true
  TOPICS=(mortgage_loans insurance)
  SUMMARY="The bank calls to say a car loan is approved and offers car insurance; the customer asks for the offer by email."
  TURNS=(
    "agent|Good afternoon, I am calling about your car loan. We use an AI to take notes on this call."
    "customer|Hi. Yes, I applied last week."
    "agent|Your loan has been approved. Do you also want car insurance with us?"
    "customer|Yes. Please send an offer to john dot smith at example dot com."
    "agent|I will send it today."
  )
}

call_13() {
  ID="ki-0013"; DIRECTION="inbound"; DESK="corporate"; SERVICE="payments"
  ADVISOR="adv-4021"; CUSTOMER="cust-16c8f4"; KI=true; INFORMED=true
  TOPICS=(payments_transfers)
  SUMMARY="A corporate customer needs to pay a supplier's invoice before tomorrow; the agent sends the payment to the account number given."
  TURNS=(
    "agent|Corporate banking, good morning. We use an AI to take notes on this call."
    "customer|Hello. We need to pay an invoice to a supplier before tomorrow."
    "agent|I can help. What is the account number?"
    "customer|It is three two one zero, four four, five five six eight one."
    "agent|Thank you. The payment is sent, and it will arrive today."
  )
}

call_14() {
  ID="ki-0014"; DIRECTION="inbound"; DESK="customer_center"; SERVICE="payments"
  ADVISOR="adv-1455"; CUSTOMER="cust-b20d5e"; KI=true; INFORMED=true
  TOPICS=(cards fraud_security)
  SUMMARY="Someone used the customer's credit card abroad; the agent stops the card, sends a new one and reports the fraud."
  TURNS=(
    "agent|Hello, customer service. We use an AI to take notes on this call."
    "customer|Someone used my credit card in another country last night. It must be fraud."
    "agent|I will stop the card right now and send you a new one."
    "customer|Thank you. Will I get my money back?"
    "agent|Yes. We will report the fraud, and you will hear from us in a week."
  )
}

# Non-KI calls: KI is off, or on but the customer was not told (so KI must not
# run). No AI disclosure in these.

call_15() {
  ID="ki-0015"; DIRECTION="inbound"; DESK="customer_center"; SERVICE="general"
  ADVISOR="adv-1042"; CUSTOMER="cust-60f9a3"; KI=false; INFORMED=false
  TOPICS=(cards)
  SUMMARY="A customer forgot the code of a new card; the agent sends a new one by post."
  TURNS=(
    "agent|Customer service, good morning. How can I help?"
    "customer|Hello. I forgot the code for my new card."
    "agent|No problem. I will send you a new code by post."
    "customer|Great, thank you very much."
  )
}

call_16() {
  ID="ki-0016"; DIRECTION="outbound"; DESK="corporate"; SERVICE="payments"
  ADVISOR="adv-4021"; CUSTOMER="cust-d83c1b"; KI=false; INFORMED=false
  TOPICS=(payments_transfers)
  SUMMARY="The corporate desk calls to set up a monthly standing order for a customer's rent."
  TURNS=(
    "agent|Good afternoon, I am calling about your standing order."
    "customer|Yes, we want to pay the rent each month."
    "agent|Fine. The first payment is made on the first of next month."
    "customer|Perfect. Thank you for the help."
  )
}

call_17() {
  ID="ki-0017"; DIRECTION="inbound"; DESK="customer_center"; SERVICE="insurance"
  ADVISOR="adv-1455"; CUSTOMER="cust-5e27c4"; KI=false; INFORMED=false
  TOPICS=(insurance)
  SUMMARY="A customer with water damage in the kitchen reports an insurance claim and leaves a phone number."
  TURNS=(
    "agent|Insurance service, hello. How can I help you?"
    "customer|We have water damage in the kitchen. Does our insurance cover it?"
    "agent|Yes, it does. I will open a claim. What is the best phone number for you?"
    "customer|It is four seven three, two one, six five eight."
    "agent|Thank you. Someone will call you tomorrow."
  )
}

call_18() {
  ID="ki-0018"; DIRECTION="inbound"; DESK="markets"; SERVICE="investment_advice"
  ADVISOR="adv-2217"; CUSTOMER="cust-9a4d06"; KI=false; INFORMED=false
  TOPICS=(investments_securities)
  SUMMARY="A customer asks the Markets desk to sell all shares in an oil company; the sell order is placed."
  TURNS=(
    "agent|Good afternoon, investment service."
    "customer|Hello. I would like to sell all my shares in the oil company."
    "agent|Fine. That is two hundred shares. Shall I place the sell order now?"
    "customer|Yes, please do."
    "agent|Thank you. The order is placed."
  )
}

call_19() {
  ID="ki-0019"; DIRECTION="inbound"; DESK="private_banking"; SERVICE="savings"
  ADVISOR="adv-3305"; CUSTOMER="cust-c1e85f"; KI=true; INFORMED=false
  TOPICS=(savings_funds)
  SUMMARY="KI was requested but the customer was not told: a client opens a high-interest savings account and gives an email address."
  TURNS=(
    "agent|Good morning, this is your advisor. How can I help you?"
    "customer|I would like to open a savings account with a good rate."
    "agent|Our high-interest account pays four percent. Where should I send the papers?"
    "customer|Please send them to linda dot hill at example dot com."
    "agent|Thank you, they are on their way."
  )
}

call_20() {
  ID="ki-0020"; DIRECTION="outbound"; DESK="customer_center"; SERVICE="loan"
  ADVISOR="adv-1187"; CUSTOMER="cust-7b3f92"; KI=true; INFORMED=false
  TOPICS=(mortgage_loans)
  SUMMARY="KI was requested but the customer was not told: the bank calls about a higher mortgage rate and the customer confirms the loan account."
  TURNS=(
    "agent|Hello, this is your advisor. I have news on your mortgage."
    "customer|Yes, hello. Has the interest rate changed?"
    "agent|Yes. The rate goes up next month. Can you confirm your loan account?"
    "customer|It is one five zero three, two seven, one one six eight four."
    "agent|Thank you. You will get a letter with your new monthly amount."
  )
}

CALLS=(call_1 call_2 call_3 call_4 call_5 call_6 call_7 call_8 call_9 call_10
       call_11 call_12 call_13 call_14 call_15 call_16 call_17 call_18 call_19 call_20)

# ---------------------------------------------------------------------------

MANIFEST="$OUT_DIR/calls.toml"
WAV_DIR="$OUT_DIR/calls"
WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT

samples_of() { soxi -s "$1"; }
ms_of_samples() { echo $(( $1 * 1000 / RATE )); }

# silence <file> <samples>: mono 16-bit digital silence.
silence() {
  "${SOX[@]}" -r "$RATE" -c 1 -b 16 -e signed-integer -n "$1" trim 0 "$2s"
}

# speak <voice> <text> <out>: speech at RATE mono 16-bit, leading and trailing
# silence trimmed, peak-normalised to -3 dBFS.
speak() {
  local voice="$1" text="$2" out="$3"
  espeak-ng -v "$voice" -s "$WPM" -w "$out.raw.wav" "$text"
  "${SOX[@]}" "$out.raw.wav" -r "$RATE" -c 1 -b 16 -e signed-integer "$out" \
    silence 1 0.02 0.5% reverse silence 1 0.02 0.5% reverse norm -3
}

die() { echo "generate.sh: $*" >&2; exit 1; }

toml_str() {
  case "$1" in *'"'*|*'\'*) die "no quotes or backslashes in manifest strings: $1" ;; esac
  printf '"%s"' "$1"
}

# check_meta: the current call's metadata is well formed.
check_meta() {
  [[ "$ID" =~ ^ki-00[0-9][0-9]$ ]] || die "bad id $ID"
  case "$DIRECTION" in inbound|outbound) ;; *) die "$ID: bad direction $DIRECTION" ;; esac
  case "$DESK" in customer_center|markets|private_banking|corporate) ;; *) die "$ID: bad desk $DESK" ;; esac
  case "$SERVICE" in general|investment_advice|loan|savings|insurance|payments) ;; *) die "$ID: bad service_category $SERVICE" ;; esac
  [[ "$ADVISOR" =~ ^adv-[0-9]{4}$ ]] || die "$ID: bad advisor_id $ADVISOR"
  [[ "$CUSTOMER" =~ ^cust-[0-9a-f]{6}$ ]] || die "$ID: bad customer_ref $CUSTOMER"
  case "$KI$INFORMED" in truetrue|truefalse|falsefalse) ;; *) die "$ID: ki_enabled=$KI customer_informed=$INFORMED" ;; esac
  (( ${#TOPICS[@]} >= 1 && ${#TOPICS[@]} <= 3 )) || die "$ID: 1 to 3 topics"
  local t
  for t in "${TOPICS[@]}"; do [[ "$TOPIC_IDS" == *" $t "* ]] || die "$ID: unknown topic $t"; done
  (( ${#TURNS[@]} >= 4 && ${#TURNS[@]} <= 6 )) || die "$ID: ${#TURNS[@]} turns, want 4 to 6"
  local first="${TURNS[0]}"
  [[ "${first%%|*}" == agent ]] || die "$ID: the agent speaks first"
  if [[ "$KI$INFORMED" == truetrue ]]; then
    [[ "$first" == *" an AI "*" notes "* ]] || die "$ID: a KI call's first line tells the customer an AI takes notes"
  else
    [[ "$first" != *" AI "* ]] || die "$ID: a non-KI call must not mention AI"
  fi
}

# build <call function>: the call's WAV in WAV_DIR, its manifest entry in
# WORK/ID.toml and its turn table in WORK/ID.turns. Runs in a subshell.
build() {
  "$1"
  check_meta
  local w="$WORK/$ID"
  mkdir -p "$w"
  local lead_samples=$(( LEAD_MS * RATE / 1000 )) pause_samples=$(( PAUSE_MS * RATE / 1000 )) tail_samples=$(( TAIL_MS * RATE / 1000 ))
  silence "$w/lead.wav" "$lead_samples"
  silence "$w/pause.wav" "$pause_samples"
  silence "$w/tail.wav" "$tail_samples"
  local agent_parts=("$w/lead.wav") customer_parts=("$w/lead.wav")
  local pos=$lead_samples script_lines=() timings=() times=() i role text voice n start_ms end_ms
  for i in "${!TURNS[@]}"; do
    role="${TURNS[$i]%%|*}"
    text="${TURNS[$i]#*|}"
    [[ "$text" =~ [0-9] ]] && die "$ID: write numbers as words, not digits: $text"
    case "$text" in *'"'*|*'\'*) die "$ID: no quotes or backslashes: $text" ;; esac
    case "$role" in
      agent) voice="$AGENT_VOICE" ;;
      customer) voice="$CUSTOMER_VOICE" ;;
      *) die "$ID: unknown role $role" ;;
    esac
    speak "$voice" "$text" "$w/$i.wav"
    n=$(samples_of "$w/$i.wav")
    silence "$w/$i-quiet.wav" "$n"
    if [[ "$role" == agent ]]; then
      agent_parts+=("$w/$i.wav"); customer_parts+=("$w/$i-quiet.wav")
    else
      agent_parts+=("$w/$i-quiet.wav"); customer_parts+=("$w/$i.wav")
    fi
    start_ms=$(ms_of_samples "$pos")
    pos=$(( pos + n ))
    end_ms=$(ms_of_samples "$pos")
    timings+=("$role:$pos:$n")
    script_lines+=("$role: $text")
    times+=("$start_ms-$end_ms")
    if (( i + 1 < ${#TURNS[@]} )); then
      agent_parts+=("$w/pause.wav"); customer_parts+=("$w/pause.wav")
      pos=$(( pos + pause_samples ))
    fi
  done
  agent_parts+=("$w/tail.wav"); customer_parts+=("$w/tail.wav")
  pos=$(( pos + tail_samples ))

  "${SOX[@]}" "${agent_parts[@]}" "$w/agent.wav"
  "${SOX[@]}" "${customer_parts[@]}" "$w/customer.wav"
  local enc
  case "$CODEC" in
    pcmu) enc=(-e u-law -b 8) ;;
    pcma) enc=(-e a-law -b 8) ;;
    l16) enc=(-e signed-integer -b 16) ;;
  esac
  "${SOX[@]}" -M "$w/agent.wav" "$w/customer.wav" -r "$RATE" -c 2 "${enc[@]}" "$WAV_DIR/$ID.wav"
  printf '%s\n' "${timings[@]}" >"$WORK/$ID.turns"

  local total_ms
  total_ms=$(ms_of_samples "$pos")
  if (( total_ms < MIN_CALL_MS || total_ms > MAX_CALL_MS )); then
    die "$ID is ${total_ms} ms, outside ${MIN_CALL_MS}-${MAX_CALL_MS} ms: shorten or lengthen its lines"
  fi

  local topics="" t line
  for t in "${TOPICS[@]}"; do topics+="${topics:+, }$(toml_str "$t")"; done
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
    echo "summary = $(toml_str "$SUMMARY")"
    echo "topics = [$topics]"
    echo "# duration ${total_ms} ms; line times (ms): ${times[*]}"
    echo "script = ["
    for line in "${script_lines[@]}"; do echo "  $(toml_str "$line"),"; done
    echo "]"
  } >"$WORK/$ID.toml"
  rm -rf "$w"
}

# rms <file> <channel> <start sample> <samples>: RMS amplitude (0..1).
rms() {
  "${SOX[@]}" "$1" -n remix "$2" trim "$3s" "$4s" stat 2>&1 | awk '/RMS +amplitude/ {print $3}'
}

# check <call function>: format, and each turn on its own channel. Prints one
# summary line to WORK/ID.check; fails on the first problem.
check() {
  "$1"
  local f="$WAV_DIR/$ID.wav" want_enc want_tag rate chans enc tag
  case "$CODEC" in
    pcmu) want_enc="u-law"; want_tag=7 ;;
    pcma) want_enc="A-law"; want_tag=6 ;;
    l16) want_enc="Signed Integer PCM"; want_tag=1 ;;
  esac
  rate=$(soxi -r "$f"); chans=$(soxi -c "$f"); enc=$(soxi -e "$f")
  tag=$(od -An -tu2 -j20 -N2 "$f" | tr -d ' ')
  if [[ "$rate" != "$RATE" || "$chans" != 2 || "$enc" != *"$want_enc"* || "$tag" != "$want_tag" ]]; then
    die "CHECK FAILED $ID: rate=$rate channels=$chans encoding=$enc tag=$tag (want $RATE, 2, $want_enc, $want_tag)"
  fi
  # Each turn: the speaker's channel is loud, the other one is silent.
  local role end n start a c speaker other
  while IFS=: read -r role end n; do
    start=$(( end - n ))
    a=$(rms "$f" 1 "$start" "$n"); c=$(rms "$f" 2 "$start" "$n")
    if [[ "$role" == agent ]]; then speaker=$a; other=$c; else speaker=$c; other=$a; fi
    awk -v s="$speaker" -v o="$other" 'BEGIN { exit !(s > 0.02 && o < 0.001) }' ||
      die "CHECK FAILED $ID: $role turn at sample $start: speaker rms $speaker, other channel rms $other"
  done <"$WORK/$ID.turns"
  printf '%s  %-4s %5s Hz  %s ch  tag %s  KI %-5s informed %-5s  %5.2f s  %7d bytes\n' \
    "$ID" "$CODEC" "$rate" "$chans" "$tag" "$KI" "$INFORMED" "$(soxi -D "$f")" "$(stat -c %s "$f")" >"$WORK/$ID.check"
}

# run_all <function>: runs <function> <call> for every call, JOBS at a time;
# fails if any did.
run_all() {
  local fn="$1" call pids=() failed=0 pid
  for call in "${CALLS[@]}"; do
    ( "$fn" "$call" ) &
    pids+=($!)
    while (( $(jobs -rp | wc -l) >= JOBS )); do wait -n || failed=1; done
  done
  for pid in "${pids[@]}"; do wait "$pid" || failed=1; done
  return "$failed"
}

mkdir -p "$WAV_DIR"
rm -f "$WAV_DIR"/ki-*.wav "$MANIFEST"

# Every KI call together covers every topic.
covered=" "
for call in "${CALLS[@]}"; do
  "$call"
  if [[ "$KI$INFORMED" == truetrue ]]; then covered+="${TOPICS[*]} "; fi
done
for t in $TOPIC_IDS; do [[ "$covered" == *" $t "* ]] || die "no KI call covers topic $t"; done

run_all build || die "building the calls failed"
run_all check || die "checks failed"
cat "$WORK"/ki-*.check

{
  echo "# KI acceptance-test corpus. Generated by tests/ki_corpus/generate.sh: edit the script, not this file."
  echo "# Audio: $RATE Hz stereo $CODEC, channel 1 = agent, channel 2 = customer; voices $AGENT_VOICE (agent), $CUSTOMER_VOICE (customer), $WPM wpm."
  echo "# The comment above each script gives each line's start-end in ms from the call start."
  for call in "${CALLS[@]}"; do "$call"; cat "$WORK/$ID.toml"; done
} >"$MANIFEST.tmp"
mv "$MANIFEST.tmp" "$MANIFEST"
echo "total $(du -cb "$WAV_DIR"/ki-*.wav | tail -1 | cut -f1) bytes; manifest $MANIFEST"
