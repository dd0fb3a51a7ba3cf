#!/usr/bin/env python3
"""Generate data/raw/kb_qa.jsonl: questions about the Lumora Home Hub H2 manuals (lesson 11).

Each *fact* is one short answer span copied from one chapter of ``data/raw/domain_corpus/train/``,
asked with two or three hand-written phrasings. Some questions ask what the manuals never say; their
answer is ``NOT_IN_MANUAL`` and their key terms are checked to be absent from the whole corpus.

The split is by fact (seeded): every phrasing of a test fact is in the test split, so a model
trained on the train split has never seen a test fact as a question/answer pair.

Records are Alpaca-style (``instruction`` = question, ``input`` = "", ``output`` = answer) plus
``fact_id``, ``source`` (the chapter, or null when the manuals do not say) and ``split``.

Usage:
    python3 data/tools/make_kb_qa.py          # write + check
    python3 data/tools/make_kb_qa.py --check  # check the committed file only
"""
from __future__ import annotations

import argparse
import json
import random
import sys
from pathlib import Path

SEED = 20261201
TEST_FRACTION = 0.25
NOT_IN_MANUAL = "The manual does not say."

ROOT = Path(__file__).resolve().parents[2]
CORPUS = ROOT / "data" / "raw" / "domain_corpus"
OUT_PATH = ROOT / "data" / "raw" / "kb_qa.jsonl"

# (fact id, chapter under train/, answer span as written in the chapter, questions)
FACTS = [
    ("specs-processor", "11_specs.md", "Quad-core Arm Cortex-A53, 1.4 GHz", [
        "What processor does the Lumora Home Hub H2 use?", "Which CPU is inside the H2 hub?"]),
    ("specs-memory", "11_specs.md", "1 GB LPDDR4", [
        "How much memory does the Lumora Home Hub H2 have?", "How much RAM is in the H2?"]),
    ("specs-storage", "11_specs.md", "8 GB eMMC", [
        "How much storage does the Lumora Home Hub H2 have?", "What is the H2's built-in storage?"]),
    ("specs-weight", "11_specs.md", "265 g", [
        "How much does the Lumora Home Hub H2 weigh?", "What is the weight of the H2 hub without accessories?"]),
    ("specs-dimensions", "11_specs.md", "118 mm diameter × 34 mm height", [
        "What are the dimensions of the Lumora Home Hub H2?", "How big is the H2 hub?"]),
    ("specs-colours", "11_specs.md", "Chalk White, Graphite", [
        "Which colours does the Lumora Home Hub H2 come in?", "In what colours can I buy the H2?"]),
    ("specs-hwrev", "11_specs.md", "B2", [
        "What is the hardware revision of the Lumora Home Hub H2 in the specifications?",
        "Which hardware revision do the H2 specifications describe?"]),
    ("specs-thread", "11_specs.md", "Thread 1.3", [
        "Which Thread version does the Lumora Home Hub H2 support?", "What version of Thread is in the H2?"]),
    ("specs-matter", "11_specs.md", "Matter 1.2", [
        "Which Matter version does the H2 support?", "What Matter version is the Lumora hub a controller for?"]),
    ("specs-bluetooth", "11_specs.md", "Bluetooth LE 5.2", [
        "Which Bluetooth version does the Lumora Home Hub H2 have?", "What Bluetooth does the H2 use for setup?"]),
    ("specs-zigbee-range", "11_specs.md", "30 m line of sight", [
        "What is the typical indoor Zigbee range of the H2 in line of sight?",
        "How far does the H2's Zigbee reach with a clear line of sight?"]),
    ("specs-ethernet", "11_specs.md", "10/100 Mbps", [
        "How fast is the Ethernet port of the Lumora Home Hub H2?", "What speed does the H2's ETH port support?"]),
    ("specs-idle-power", "11_specs.md", "2.6 W", [
        "What is the typical idle power consumption of the H2?", "How much power does the Lumora hub draw when idle?"]),
    ("specs-max-power", "11_specs.md", "4.8 W", [
        "What is the maximum power consumption of the H2 hub alone?",
        "How much power can the Lumora Home Hub H2 draw at most without accessories?"]),
    ("specs-min-voltage", "11_specs.md", "4.6 V", [
        "What is the minimum input voltage of the H2 before it reports E-502?",
        "Below which input voltage does the Lumora hub show E-502?"]),
    ("specs-backup-hours", "11_specs.md", "up to 10 hours", [
        "How long can the PowerPack PP-10 keep the H2 running?", "How many hours of backup power does the PP-10 give the hub?"]),
    ("specs-max-devices", "11_specs.md", "250", [
        "How many devices can one Lumora Home Hub H2 handle across all protocols?",
        "What is the maximum number of devices per H2 hub?"]),
    ("specs-thread-devices", "11_specs.md", "100", [
        "How many Thread devices can the H2 support?", "What is the limit on Thread devices per Lumora hub?"]),
    ("specs-flows", "11_specs.md", "300", [
        "How many Flows can the Lumora Home Hub H2 store?", "What is the maximum number of Flows on one H2?"]),
    ("specs-members", "11_specs.md", "20", [
        "How many household members can a Lumora home have?", "What is the limit on household members per home?"]),
    ("specs-operating-temp", "11_specs.md", "0 °C to 40 °C", [
        "What is the operating temperature range of the H2?", "In what temperature range may the Lumora Home Hub H2 be used?"]),
    ("specs-shutdown-temp", "11_specs.md", "shutdown at 80 °C", [
        "At what internal temperature does the H2 shut down?", "When does the Lumora hub's overheat protection turn it off?"]),
    ("specs-halo-leds", "11_specs.md", "24 RGB LEDs", [
        "How many LEDs are in the Halo ring according to the specifications?", "What LEDs make up the H2's Halo ring?"]),
    ("err-e101", "08_error_codes.md", "Wi-Fi password rejected", [
        "What does error E-101 mean?", "What is the H2 error E-101?", "My Lumora hub shows E-101. What is wrong?"]),
    ("err-e102", "08_error_codes.md", "Wi-Fi network not found", [
        "What does error E-102 mean?", "The hub reports E-102. What does that code stand for?"]),
    ("err-e103", "08_error_codes.md", "No IP address received", [
        "What does error E-103 mean?", "What problem does E-103 report on the H2?"]),
    ("err-e104", "08_error_codes.md", "Lumora Cloud unreachable", [
        "What does error E-104 mean?", "My hub shows E-104. What is the problem?", "What is error E-104 on the Lumora Home Hub H2?"]),
    ("err-e105", "08_error_codes.md", "Ethernet link down", [
        "What does error E-105 mean?", "What does the H2 mean by E-105?"]),
    ("err-e105-fallback", "08_error_codes.md", "after 60 seconds", [
        "When does the H2 fall back to Wi-Fi if the Ethernet link is down?",
        "How long after an Ethernet link loss does the hub switch to a saved Wi-Fi network?"]),
    ("err-e201", "08_error_codes.md", "Zigbee radio failed to start", [
        "What does error E-201 mean?", "What is E-201 on the Lumora hub?"]),
    ("err-e202", "08_error_codes.md", "High Zigbee interference", [
        "What does error E-202 mean?", "The app shows E-202. What does it mean?"]),
    ("err-e212", "08_error_codes.md", "Matter commissioning timed out", [
        "What does error E-212 mean?", "What does E-212 report?"]),
    ("err-e301", "08_error_codes.md", "Session expired", [
        "What does error E-301 mean?", "What is the H2 error E-301?"]),
    ("err-e303", "08_error_codes.md", "Home hub limit reached", [
        "What does error E-303 mean?", "Why would the app show E-303?"]),
    ("err-e401", "08_error_codes.md", "Update download failed", [
        "What does error E-401 mean?", "What is error E-401 on the Lumora Home Hub H2?"]),
    ("err-e402", "08_error_codes.md", "Firmware signature invalid", [
        "What does error E-402 mean?", "What does the code E-402 tell me?"]),
    ("err-history", "08_error_codes.md", "The last 50 errors", [
        "How many past errors does Hub Health keep in its error history?",
        "How many errors are stored under Hub Health > Error history?"]),
    ("led-pulsing-amber", "09_led_codes.md", "Firmware update in progress", [
        "What does a pulsing amber Halo ring mean?", "The ring is pulsing amber. What is the hub doing?"]),
    ("led-pulsing-purple", "09_led_codes.md", "Factory reset in progress", [
        "What does a pulsing purple Halo ring mean?", "Why is my H2's ring pulsing purple?"]),
    ("led-spinning-blue", "09_led_codes.md", "Setup mode, waiting for the Lumora app", [
        "What does a spinning blue Halo ring mean?", "What does the hub signal with a spinning blue ring?"]),
    ("led-startup-time", "09_led_codes.md", "about 40 seconds", [
        "How long does the H2 take to start up?", "How long is the pulsing white start-up phase?"]),
    ("led-dim-level", "09_led_codes.md", "30 %", [
        "To what brightness does the Halo ring dim at night by default?",
        "How bright is the ring between 22:00 and 07:00 by default?"]),
    ("led-pairing-window", "09_led_codes.md", "120 seconds", [
        "How long does the Zigbee pairing window stay open after holding the Action button for 3 seconds?",
        "For how long does holding the Action button 3 seconds open pairing?"]),
    ("led-factory-reset", "09_led_codes.md", "Hold 15 seconds", [
        "How do I factory reset the H2 with the reset pin?", "How long must the reset pinhole be held for a factory reset?"]),
    ("warranty-hub", "12_warranty.md", "24 months", [
        "How long is the standard warranty of the Lumora Home Hub H2?", "What is the H2's warranty without registration?"]),
    ("warranty-hub-registered", "12_warranty.md", "36 months", [
        "How long is the H2's warranty if I register it?", "What warranty does a registered Lumora Home Hub H2 get?"]),
    ("warranty-registration-window", "12_warranty.md", "within 90 days of purchase", [
        "By when must I register my Lumora product to get the longer warranty?",
        "How soon after purchase do I have to register the hub?"]),
    ("warranty-pp10-capacity", "12_warranty.md", "70 %", [
        "Below what battery capacity is the PowerPack PP-10 covered by the warranty?",
        "What capacity loss of the PP-10 counts as a warranty defect?"]),
    ("warranty-review", "12_warranty.md", "usually within two working days", [
        "How quickly does Lumora Support review a warranty claim?", "How long does a warranty claim review take?"]),
    ("warranty-uk-phone", "12_warranty.md", "+44 20 7946 0321", [
        "What is Lumora Support's phone number in the United Kingdom?", "Which number do I call for Lumora Support in the UK?"]),
    ("warranty-email", "12_warranty.md", "support@lumorasystems.example", [
        "What is Lumora Support's email address?", "Where do I email Lumora Support?"]),
    ("acc-ds2-battery", "18_accessories.md", "CR2032 coin cell", [
        "What battery does the Door & Window Sensor DS-2 use?", "Which coin cell powers the DS-2?"]),
    ("acc-ms3-battery", "18_accessories.md", "CR2450 coin cell", [
        "What battery does the Motion Sensor MS-3 use?", "Which battery goes into the MS-3?"]),
    ("acc-rv2-battery", "18_accessories.md", "2 × AA", [
        "What batteries does the Smart Radiator Valve RV-2 take?", "How is the RV-2 powered?"]),
    ("acc-lcm4-radio", "18_accessories.md", "LTE-M", [
        "Which radio does the Cellular Backup Module LCM-4 use?", "What network does the LCM-4 connect over?"]),
    ("acc-ms3-range", "18_accessories.md", "range of 7 metres", [
        "What is the detection range of the Motion Sensor MS-3?", "How far can the MS-3 detect motion?"]),
    ("acc-wl1-beeper", "18_accessories.md", "85 dB", [
        "How loud is the Water Leak Sensor WL-1's beeper?", "What volume does the WL-1 beep at?"]),
    ("acc-th1-accuracy", "18_accessories.md", "±0.3 °C", [
        "How accurate is the TH-1's temperature reading?", "What is the temperature accuracy of the TH-1 sensor?"]),
    ("acc-ds2-gap", "18_accessories.md", "no more than 15 mm apart", [
        "How far apart may the DS-2 sensor body and magnet be when closed?",
        "What is the maximum gap between the DS-2's body and its magnet?"]),
    ("fw-update-time", "10_firmware.md", "between 6 and 12 minutes", [
        "How long does a typical HubOS update take?", "How many minutes does a firmware update usually take on the H2?"]),
    ("fw-window", "10_firmware.md", "between 02:00 and 05:00 local time", [
        "When is the H2's maintenance window for updates?", "At what time does the hub install automatic updates?"]),
    ("fw-pause", "10_firmware.md", "up to 30 days", [
        "For how long can automatic updates be paused?", "How long can I pause HubOS updates?"]),
    ("fw-battery", "10_firmware.md", "below 25 % battery", [
        "Below what battery level do accessory updates never run?",
        "When is an accessory firmware update blocked because of its battery?"]),
    ("backup-count", "14_backup_restore.md", "The ten most recent backups", [
        "How many automatic backups does Lumora Cloud keep?", "How many recent backups of the hub are kept?"]),
    ("backup-manual-days", "14_backup_restore.md", "Manual backups are kept for 90 days", [
        "How long are manual backups kept?", "For how many days does Lumora keep a manual backup?"]),
    ("energy-yearly", "15_energy.md", "about 23 kWh", [
        "How much energy does the hub itself use over a year?", "What is the H2's own yearly energy consumption?"]),
    ("energy-cloud", "15_energy.md", "13 months", [
        "How long are hourly energy values kept in Lumora Cloud?", "For how long does Lumora Cloud keep energy history?"]),
    ("privacy-tls", "17_privacy.md", "TLS 1.3", [
        "Which encryption protects communication between the hub, the app and Lumora Cloud?",
        "What TLS version does the Lumora hub use?"]),
    ("privacy-diagnostic", "17_privacy.md", "deleted after 14 days", [
        "How long is a detailed diagnostic report kept?", "When is the detailed diagnostic report deleted?"]),
    ("setup-distance", "02_setup.md", "At least 1 metre away from the Wi-Fi router", [
        "How far from the Wi-Fi router should the H2 be placed?", "What distance should the hub keep from the router?"]),
    ("setup-height", "02_setup.md", "at least 50 cm above the floor", [
        "How high above the floor should the H2 be placed?", "At what height should I put the hub on a shelf?"]),
    ("setup-phone", "02_setup.md", "iOS 16 or later, or Android 10 or later", [
        "Which phone systems does the Lumora app need for setup?", "What iOS or Android version do I need to set up the hub?"]),
    ("zigbee-parents", "04_devices_zigbee.md", "up to 32 battery-powered devices", [
        "How many battery devices can the H2 parent directly?", "For how many battery-powered Zigbee devices can the hub be the direct parent?"]),
]

# (id, key terms that must appear nowhere in the corpus, questions). The answer is NOT_IN_MANUAL.
UNANSWERABLE = [
    ("na-price", ["price of the", "retail price", "costs £", "costs $", "€"], [
        "How much does the Lumora Home Hub H2 cost?", "What is the retail price of the H2?"]),
    ("na-ceo", ["CEO", "chief executive"], [
        "Who is the CEO of Lumora Systems?", "Who runs Lumora Systems?"]),
    ("na-hq", ["headquarter", "head office"], [
        "Where are Lumora Systems' headquarters?", "In which city is Lumora Systems based?"]),
    ("na-factory", ["manufactured in", "made in", "factory in"], [
        "In which country is the H2 manufactured?", "Where is the Lumora Home Hub H2 made?"]),
    ("na-ip-rating", ["IP rating", "IP44", "IP54", "IP65", "IP67"], [
        "What is the IP rating of the H2?", "What is the ingress protection rating of the Lumora hub?"]),
    ("na-hdmi", ["HDMI"], [
        "How many HDMI ports does the H2 have?", "Can I connect the H2 to a TV over HDMI?"]),
    ("na-sdcard", ["microSD", "SD card"], [
        "What is the largest microSD card the H2 accepts?", "Does the H2 have an SD card slot, and how big can the card be?"]),
    ("na-founded", ["founded", "established in"], [
        "When was Lumora Systems founded?", "What year was Lumora Systems established?"]),
    ("na-employees", ["employees", "staff of"], [
        "How many employees does Lumora Systems have?", "How large is Lumora Systems' workforce?"]),
    ("na-wifi7", ["Wi-Fi 7", "802.11be"], [
        "Does the H2 support Wi-Fi 7 multi-link operation?", "What Wi-Fi 7 features does the hub have?"]),
    ("na-camera-storage", ["video recording", "record video", "NVR"], [
        "How many days of camera video can the H2 record?", "How much camera footage does the hub store?"]),
    ("na-screen", ["touchscreen", "touch screen", "screen resolution"], [
        "What is the touchscreen resolution of the H2?", "How large is the H2's touch screen?"]),
    ("na-h3", ["H3", "LHH-H3"], [
        "When will the Lumora Home Hub H3 be released?", "What does the H3 add over the H2?"]),
]


def corpus_text() -> dict[str, str]:
    """Every Markdown document of the domain corpus, keyed by its path under ``domain_corpus/``."""
    files = sorted(p for p in CORPUS.rglob("*.md") if p.name != "README.md")
    return {p.relative_to(CORPUS).as_posix(): p.read_text(encoding="utf-8") for p in files}


def check_sources(corpus: dict[str, str]) -> list[str]:
    """Problems with the fact table: spans not in their chapter, duplicate ids or questions, present 'unknowns'."""
    problems = []
    ids = [f[0] for f in FACTS] + [u[0] for u in UNANSWERABLE]
    if len(ids) != len(set(ids)):
        problems.append("duplicate fact ids")
    questions = [q for f in FACTS for q in f[3]] + [q for u in UNANSWERABLE for q in u[2]]
    if len(questions) != len(set(questions)):
        problems.append("duplicate questions")
    for fact_id, chapter, answer, _ in FACTS:
        if answer not in corpus.get(f"train/{chapter}", ""):
            problems.append(f"{fact_id}: {answer!r} is not in train/{chapter}")
    everything = "\n".join(corpus.values()).lower()
    for fact_id, terms, _ in UNANSWERABLE:
        for term in terms:
            if term.lower() in everything:
                problems.append(f"{fact_id}: {term!r} occurs in the corpus, so the manuals may answer it")
    return problems


def build() -> list[dict]:
    """All records, test facts chosen per kind (answerable / not) with the fixed seed."""
    rng = random.Random(SEED)
    test_ids: set[str] = set()
    for ids in ([f[0] for f in FACTS], [u[0] for u in UNANSWERABLE]):
        test_ids.update(rng.sample(ids, round(len(ids) * TEST_FRACTION)))
    items = [(fid, f"train/{ch}", ans, qs) for fid, ch, ans, qs in FACTS]
    items += [(uid, None, NOT_IN_MANUAL, qs) for uid, _, qs in UNANSWERABLE]
    return [
        {"instruction": q, "input": "", "output": answer, "fact_id": fid, "source": source,
         "split": "test" if fid in test_ids else "train"}
        for fid, source, answer, questions in items for q in questions
    ]


def render(records: list[dict]) -> str:
    return "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="only check that the committed file is up to date")
    args = parser.parse_args()
    problems = check_sources(corpus_text())
    if problems:
        print("\n".join(problems), file=sys.stderr)
        return 1
    text = render(build())
    if args.check:
        if not OUT_PATH.exists() or OUT_PATH.read_text(encoding="utf-8") != text:
            print(f"{OUT_PATH} is out of date; run {Path(__file__).name} without --check", file=sys.stderr)
            return 1
    else:
        tmp = OUT_PATH.with_suffix(".tmp")
        tmp.write_text(text, encoding="utf-8")
        tmp.replace(OUT_PATH)
    records = build()
    test = sum(r["split"] == "test" for r in records)
    print(f"{len(records)} questions ({test} test), {len(FACTS)} facts, {len(UNANSWERABLE)} unanswerable: {OUT_PATH}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
