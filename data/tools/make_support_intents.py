#!/usr/bin/env python3
"""Generate the bundled customer-support intent dataset.

Writes (relative to the repository root):
  data/raw/support_intents.jsonl         ~1000 examples, 100 per label
  data/raw/support_intents_unseen.jsonl  110 examples, 11 per label, different style

How the texts are produced
--------------------------
* Main file: for each of the 10 labels there is a list of fully hand-written
  one-off messages (about 20 per label) plus a list of hand-written message
  bodies with slots ({order}, {product}, {when}, ...). Templated examples combine
  a body with optional hand-written context sentences, greetings and sign-offs,
  a fictional catalogue of ~40 products (with per-category defects, questions
  and return reasons), order numbers in several shapes, and light style noise
  (lowercasing, dropped punctuation, chat abbreviations, keyboard typos).
  Generation is deterministic (fixed seeds).
* Unseen file: fully hand-written, in a different register (formal emails with
  subject lines, or heavy chat-speak with emoji) and about a different product
  catalogue (furniture, garden, toys, beauty, books, pets).

Run:  python3 data/tools/make_support_intents.py          (writes + checks)
      python3 data/tools/make_support_intents.py --check  (only checks)
"""
from __future__ import annotations

import json
import random
import re
import sys
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
MAIN_PATH = ROOT / "data" / "raw" / "support_intents.jsonl"
UNSEEN_PATH = ROOT / "data" / "raw" / "support_intents_unseen.jsonl"

LABELS = [
    "order_status",
    "cancel_order",
    "return_refund",
    "damaged_item",
    "billing_issue",
    "payment_update",
    "account_access",
    "change_address",
    "product_info",
    "talk_to_human",
]
PER_LABEL = 100
SEED = 20240611

# ---------------------------------------------------------------------------
# Catalogue: (name, category, plural, compatibility targets or None)
# ---------------------------------------------------------------------------
PRODUCTS = [
    # devices (power on / pair / charge)
    ("Pulse Buds 3 earbuds", "device", True, ["an iPhone 15", "my Android phone", "a Windows laptop"]),
    ("VoltMax 20000 power bank", "device", False, ["an iPhone 15", "a MacBook Air", "a Nintendo Switch"]),
    ("Orbit Mini smart speaker", "device", False, ["Alexa", "Google Home", "Spotify Connect"]),
    ("Halo 27 monitor", "device", False, ["a MacBook Air", "a PS5", "a Windows 11 laptop"]),
    ("Stratus K7 mechanical keyboard", "device", False, ["a Mac", "an iPad", "Linux"]),
    ("Glide M2 wireless mouse", "device", False, ["a Mac", "a Chromebook", "an iPad"]),
    ("Nova 6 smartwatch", "device", False, ["an iPhone 15", "my Android phone", "a Samsung Galaxy S23"]),
    ("Tempo Band fitness tracker", "device", False, ["an iPhone 15", "Strava", "Apple Health"]),
    ("PixelCast 4K streaming stick", "device", False, ["an older Samsung TV", "a projector", "a hotel TV"]),
    ("Quill Paper e-reader", "device", False, ["library e-books", "EPUB files", "audiobooks"]),
    ("EchoCam HD webcam", "device", False, ["a Mac", "Zoom", "Windows 11"]),
    ("Pebble Bluetooth tracker", "device", False, ["an iPhone 15", "my Android phone"]),
    ("SonicClean electric toothbrush", "device", False, None),
    ("Flux 7-in-1 USB-C hub", "device", False, ["a MacBook Air", "an iPad Pro", "a Dell XPS laptop"]),
    # appliances
    ("AeroBlend X2 blender", "appliance", False, None),
    ("KettlePro 1.7L kettle", "appliance", False, None),
    ("BrewMaster Duo espresso machine", "appliance", False, None),
    ("CrispAir 5L air fryer", "appliance", False, None),
    ("Zephyr tower fan", "appliance", False, None),
    ("Breeze 300 air purifier", "appliance", False, None),
    ("Lumen desk lamp", "appliance", False, None),
    # kitchenware / hard home goods
    ("ChefMate 12-piece knife set", "hardgoods", False, None),
    ("Cascade steel water bottle", "hardgoods", False, None),
    ("Terra ceramic planter set", "hardgoods", False, None),
    ("Ember cast-iron skillet", "hardgoods", False, None),
    # soft home goods
    ("CozyKnit throw blanket", "textile", False, None),
    ("Drift linen duvet cover", "textile", False, None),
    ("Solace memory foam pillow", "textile", False, None),
    ("Lull weighted blanket", "textile", False, None),
    ("Nest & Nook bath towel set", "textile", False, None),
    # clothing
    ("Summit rain jacket", "apparel", False, None),
    ("Harbor denim jacket", "apparel", False, None),
    ("Meadow cotton hoodie", "apparel", False, None),
    ("Marlow wool sweater", "apparel", False, None),
    ("Strider running shorts", "apparel", True, None),
    # footwear
    ("TrailRunner Pro shoes", "footwear", True, None),
    ("Cloudstep slippers", "footwear", True, None),
    ("Alpine Ridge hiking boots", "footwear", True, None),
    # bags
    ("Nimbus 14 laptop sleeve", "bag", False, None),
    ("Ridge 30L hiking backpack", "bag", False, None),
    # furniture
    ("Atlas standing desk", "furniture", False, None),
    ("Perch ergonomic office chair", "furniture", False, None),
]
HARD_CATS = {"device", "appliance", "hardgoods", "furniture"}


def agreement(plural: bool) -> dict:
    if plural:
        return dict(it="they", It="They", obj="them", is_="are", was="were", has="have",
                    does="do", doesnt="don't", s="", Does="Do", Is="Are", Has="Have",
                    its_="their", hasnt="haven't", isnt="aren't")
    return dict(it="it", It="It", obj="it", is_="is", was="was", has="has",
                does="does", doesnt="doesn't", s="s", Does="Does", Is="Is", Has="Has",
                its_="its", hasnt="hasn't", isnt="isn't")


DEFECTS = {
    "device": [
        "{doesnt} turn on at all",
        "won't power up no matter which cable or socket I try",
        "{has} a cracked casing",
        "keep{s} restarting by {obj}self",
        "make{s} a high-pitched buzzing noise",
        "{is} completely dead out of the box",
        "{has} a deep scratch across the front",
        "stopped working after one use",
        "keep{s} freezing and cutting out",
    ],
    "appliance": [
        "{has} a crack down the side",
        "leak{s} all over the counter",
        "smell{s} like burning plastic on first use",
        "{was} badly dented inside the box",
        "{doesnt} power on",
        "trip{s} the breaker every time I plug {obj} in",
        "make{s} a horrible grinding noise",
    ],
    "hardgoods": [
        "{was} chipped when I unwrapped {obj}",
        "{has} a big dent in {obj}",
        "arrived in pieces",
        "{has} rust spots on {obj}",
        "{has} a crack running through {obj}",
    ],
    "textile": [
        "{has} a big tear along the seam",
        "{has} a stain that won't wash out",
        "{was} ripped when I opened the bag",
        "{has} loose stitching all along one edge",
        "smell{s} strongly of damp",
    ],
    "apparel": [
        "{has} a hole in {obj}",
        "{has} a broken zip",
        "{has} a stain on the front",
        "{has} a ripped seam",
        "{has} a huge snag in the fabric",
    ],
    "footwear": [
        "{has} soles that are already peeling off",
        "{is} scuffed all over",
        "{has} a torn lining",
        "{has} glue marks all over the toe",
    ],
    "bag": [
        "{has} a broken zip",
        "{has} a rip in the fabric",
        "{has} a strap that's torn through",
        "{was} covered in some kind of oil stain",
    ],
    "furniture": [
        "{has} a cracked leg",
        "{has} a split panel",
        "{has} a big gouge in the top",
        "{was} missing screws and one of the brackets is snapped",
    ],
}

RETURN_REASONS_GENERIC = [
    "it's not what I expected from the photos",
    "I changed my mind",
    "I ended up not needing it",
    "I found one I like better",
    "the colour looks different in person",
    "it was a gift and they already have one",
    "it's just not for me",
    "I bought it for a trip that got cancelled",
]
RETURN_REASONS_CAT = {
    "apparel": ["it doesn't fit", "it's a size too small", "the fit is way too boxy on me"],
    "footwear": ["they pinch at the toes", "they're half a size too big", "they don't fit well"],
    "furniture": ["it's too big for the room", "it doesn't go with the rest of the office"],
    "appliance": ["it's bigger than I expected and doesn't fit on my counter",
                  "it's louder than I'd like"],
    "device": ["it doesn't suit my setup", "I already have something similar"],
    "textile": ["it's a bit too warm for me", "it doesn't match the bedroom"],
}

# Per-category pre-purchase questions. Questions containing {platform} are only
# used for products that list compatibility targets.
PRODUCT_Q = {
    "device": [
        "{Is} the {product} compatible with {platform}?",
        "Will the {product} work with {platform}?",
        "{Does} the {product} work with {platform} out of the box?",
        "What comes in the box with the {product}?",
        "How long is the warranty on the {product}?",
        "{Does} the {product} need an app to set up, or {does} {it} work straight away?",
        "What's the difference between the {product} and the previous model?",
        "Is there a newer version of the {product} coming out soon?",
    ],
    "appliance": [
        "What's the wattage on the {product}?",
        "Does the {product} work on 220V, or is it 110V only?",
        "How loud is the {product}? I live in a small flat.",
        "Which parts of the {product} are dishwasher safe?",
        "How long is the power cord on the {product}?",
        "Is the {product} easy to clean?",
        "What's the capacity of the {product}?",
        "How long is the warranty on the {product}?",
    ],
    "hardgoods": [
        "Is the {product} dishwasher safe?",
        "What exactly is the {product} made of?",
        "How heavy is the {product}?",
        "Does the {product} come with any kind of guarantee?",
    ],
    "textile": [
        "What are the exact dimensions of the {product}?",
        "Is the {product} machine washable?",
        "What's the {product} made of?",
        "Is the {product} suitable for someone with a wool allergy?",
        "How thick is the {product}?",
    ],
    "apparel": [
        "{Does} the {product} run true to size?",
        "What fabric {is} the {product} made from?",
        "{Is} the {product} available in XXL?",
        "I'm 5'10 and about 170 lbs, would a medium in the {product} fit me?",
        "Can the {product} go in the tumble dryer?",
        "Is there a size chart for the {product}? I'm between a small and a medium.",
    ],
    "footwear": [
        "Do the {product} come in half sizes?",
        "Are the {product} okay for wide feet?",
        "Are the {product} waterproof?",
        "I'm usually a 9.5, what size should I get in the {product}?",
        "How much do the {product} weigh per pair?",
    ],
    "bag": [
        "Will a 15 inch laptop fit in the {product}?",
        "Is the {product} water resistant?",
        "What are the dimensions of the {product}?",
        "Does the {product} have a padded compartment?",
    ],
    "furniture": [
        "What's the weight limit on the {product}?",
        "Does the {product} come assembled or flat-packed?",
        "What are the height settings on the {product}?",
        "How long does the {product} take to put together?",
        "How long is the warranty on the {product}?",
    ],
}
PRODUCT_Q_GENERIC = [
    "{Is} the {product} in stock right now?",
    "When will the {product} be back in stock?",
    "{Does} the {product} come in any other colours?",
    "Do you have the {product} in black?",
    "Is the {product} still available in grey, or is that sold out?",
]

WHEN = ["last Tuesday", "on Monday", "a week ago", "on the 3rd", "10 days ago",
        "over two weeks ago", "on March 2nd", "last weekend", "five days ago",
        "on Friday", "earlier this month", "on the 14th", "nine days ago",
        "at the start of last week"]
WHEN_LONG = ["over two weeks ago", "three weeks ago", "on the 2nd", "at the start of the month",
             "about ten days ago", "a fortnight ago", "last month", "on the 9th"]
WINDOW = ["Monday to Wednesday", "the 3rd to the 5th", "last week", "yesterday",
          "9am to 1pm today", "Friday at the latest", "before the weekend"]
DEADLINE = ["Saturday", "the 20th", "next Friday", "this weekend", "Christmas Eve",
            "my son's birthday on Thursday", "the end of the month"]
ADDRESSES = [
    "14 Elm Street, Apt 3, Boston MA 02116",
    "221 Baker Road, Springfield IL 62704",
    "Flat 2, 9 Rosewood Lane, Bristol BS3 1AA",
    "88 Harbour View Drive, Portland ME 04101",
    "27 Willow Crescent, Leeds LS6 2PQ",
    "400 Market St, Suite 1200, San Francisco CA 94105",
    "5 Kingfisher Way, Cambridge CB4 1GH",
    "1702 Pine Ave, Unit 6, Austin TX 78704",
    "33 Orchard Close, Norwich NR2 3LL",
    "910 Lakeshore Blvd, Apt 12C, Chicago IL 60611",
    "12 Mill Lane, Galway H91 X2Y3",
    "46 Station Road, Reading RG1 1LX",
    "250 W 85th St, Apt 4B, New York NY 10024",
    "7 Cedar Court, Dublin D06 F2K5",
]
NAMES = ["Priya", "Tom", "Daniel K.", "Maria", "Jess", "Ahmed", "Lena", "Chris",
         "Olu", "Sam", "Hannah", "Wei", "Carlos", "Fatima", "Greg", "Aoife",
         "Marcus", "Nadia", "Ben R.", "Yuki"]
PHONES = ["(555) 013-2291", "555-0148", "07700 900482", "+1 555 017 3320",
          "07700 900135", "(555) 010-7765"]


def order_ref(rng: random.Random) -> str:
    d = lambda n: "".join(rng.choice("0123456789") for _ in range(n))
    L = lambda n: "".join(rng.choice("ABCDEFGHJKLMNPRSTUVWXYZ") for _ in range(n))
    shapes = [
        lambda: f"order #{rng.randint(1, 9)}{d(4)}",
        lambda: f"order {rng.randint(1, 9)}{d(6)}",
        lambda: f"ord no. {rng.randint(1, 9)}{d(4)}",
        lambda: f"order no. {rng.randint(1, 9)}{d(5)}",
        lambda: f"order number {L(2)}-{rng.randint(1, 9)}{d(4)}",
        lambda: f"order ORD-{rng.randint(1, 9)}{d(5)}",
        lambda: f"order # {rng.randint(1, 9)}{d(4)}",
        lambda: f"order {L(1)}{d(4)}-{d(2)}",
        lambda: f"order (ref {rng.randint(1, 9)}{d(4)})",
        lambda: f"order #{rng.randint(1, 9)}{d(7)}",
    ]
    return rng.choice(shapes)()


def cents(rng: random.Random) -> str:
    return rng.choice(["00", "99", "49", "95", "50", "20"])


# ---------------------------------------------------------------------------
# Per-label material.
#   bodies   : the core message. {order} renders as e.g. "order #48213".
#   contexts : optional sentence before the body; extras: optional sentence after.
# Mini-syntax: "[a|b|c]" picks one alternative. Leading tags: "[hard]" = only
# rigid products; "[bare]" = never decorated; "[o]" (contexts/extras) = only
# when the body mentions an order number.
# ---------------------------------------------------------------------------
T = {}

T["order_status"] = dict(
    bodies=[
        "[Where is|What's happening with|Any update on] my {order}? It was supposed to arrive {when}.",
        "Can you tell me when {order} will [be delivered|arrive|get to me]?",
        "I ordered the {product} {when} and still haven't received {obj}. Where {is} {it}?",
        "The tracking for {order} hasn't [updated|moved|changed] in {days} days. Is it lost?",
        "what's the status of {order}",
        "{Has} my {product} shipped yet?",
        "Could you [send me|give me] the tracking number for {order}?",
        "Tracking has said 'label created' for {days} days now. Is my package actually on its way?",
        "When can I expect my {product}? The confirmation email didn't give a delivery date.",
        "My {order} has said 'out for delivery' since [7am|this morning] and it's now evening. Is it still coming today?",
        "I need the {product} by {deadline}. Will {order} get here in time?",
        "Is there an estimated delivery date for {order}?",
        "The tracking link in my email for {order} [doesn't work|just shows an error]. Can you tell me where the parcel is?",
        "Has {order} left the warehouse yet?",
        "It's been {days} days since I placed {order} and still nothing. Where is it?",
        "My {product} {has} been 'in transit' for a week now. Can you check with the courier?",
        "Can you check whether {order} has been dispatched?",
        "The app says {order} was delivered but there's nothing at my door or with the neighbours. Where did it go?",
        "I only got part of {order}. When is the {product} arriving?",
        "Just checking in on {order}, any idea when it'll ship?",
        "Which courier is delivering {order}, and do you have a tracking code for it?",
        "Is {order} still processing? It's been a few days with no shipping email.",
        "{Is} my {product} going to make it before {deadline}?",
        "Any news on {order}? The delivery window was {window}.",
        "how long does delivery usually take? i ordered the {product} {when} and haven't heard anything since",
        "The estimated delivery date for {order} keeps getting pushed back. What's going on?",
        "I got a shipping confirmation for {order} but the tracking number shows no information at all.",
        "Can you confirm my {product} {is} actually on {its} way to me?",
        "Still waiting on {order}. Can someone look up where it is?",
        "Will {order} arrive today? Tracking just says 'arriving soon'.",
        "Is {order} [lost|stuck somewhere]? Nothing's moved on the tracking page since {when}.",
        "My parcel with the {product} was meant to come {when}. Still nothing. Can you [find out what's going on|chase it up]?",
        "I [paid for|chose] next-day delivery on {order} and it's been {days} days. Where is it?",
        "How do I track {order}? I can't find a tracking link anywhere.",
        "[Roughly|Approximately] when will the {product} I ordered be dispatched?",
        "The tracking page for {order} says 'delayed'. Do you know the new delivery date?",
        "The rest of {order} arrived {when} but the {product} didn't. Is {it} coming separately?",
        "The courier tried to deliver {order} while I was out. When will they try again?",
        "Do you know what time the courier will turn up with {order} today?",
    ],
    contexts=[
        "It's a birthday present so I'm getting a bit anxious.",
        "First time ordering from you guys.",
        "Sorry to chase.",
        "Hope you can help.",
    ],
    extras=[
        "Please let me know either way.",
        "It's getting a bit ridiculous now.",
        "Thanks for checking.",
    ],
)

T["cancel_order"] = dict(
    bodies=[
        "[I'd like to|I want to|Could you please] cancel {order}.",
        "Please cancel my order for the {product}. I placed it by mistake.",
        "Can I still cancel {order}? It hasn't shipped yet.",
        "I accidentally placed {order} twice. Please cancel the duplicate.",
        "cancel {order} pls, found it cheaper elsewhere",
        "I changed my mind about the {product}. {It} {hasnt} been dispatched, so please cancel the order.",
        "How do I cancel an order I placed {when}? It's still showing as processing.",
        "Please stop {order} before it goes out. I don't need it anymore.",
        "I want to cancel my order. The delivery estimate for the {product} is [three weeks|over a month] and I can't wait that long.",
        "Is it too late to cancel {order}? I only placed it [an hour ago|this morning|last night].",
        "Please cancel the {product} from my order, I'll keep everything else.",
        "I ordered the wrong colour of the {product}. Can you cancel the order before it ships so I can reorder?",
        "Please cancel {order} right away and confirm by email.",
        "Need to cancel {order}, it's a duplicate of an order I made yesterday.",
        "I no longer need the {product}. Can you cancel my order before it ships?",
        "There's no cancel button on the order page for {order}. Can you cancel it for me?",
        "My order hasn't shipped yet and I'd like to call it off.",
        "How do I cancel? It's {order}, not shipped yet.",
        "Can you cancel {order}? I'm moving abroad next week and won't be here to receive it.",
        "I'd like to cancel the whole of {order} and make sure I'm not charged for it.",
        "please cancel, ordered by accident. {order}",
        "I want to cancel the {product} I pre-ordered.",
        "My [kid|teenager|flatmate] placed an order on my account without asking. Please cancel {order} before it's sent.",
        "Can I cancel {order}? The {product} {is} still listed as 'awaiting dispatch'.",
        "Please cancel {order}, someone already got me the {product} as a gift.",
        "Do I need to do anything to cancel {order}, or can you do it from your end?",
        "Hold on, I want to cancel {order}. Don't ship it.",
        "I'd like to cancel the {product} while the order is still processing. Is that possible?",
        "Please don't send {order}. I've decided I don't want the {product} after all.",
        "I'd like to withdraw {order}. It's still showing 'not yet shipped' on my account.",
        "Could you cancel {order} for me? I [ordered the wrong model|picked the wrong size] and I'll just start again.",
        "Just placed {order} and immediately regretted it. Any chance you can cancel it before it's packed?",
        "Can I get {order} cancelled? The {product} was an impulse buy.",
        "I want to cancel my pre-order for the {product}. The release date got pushed back [again|to next year].",
        "Is there still time to cancel {order}? I haven't had a dispatch email.",
        "Please cancel my most recent order. I don't need the {product} anymore.",
        "Scrap {order} please, I'll order again next month.",
    ],
    contexts=[
        "Sorry for the hassle.",
        "Hope this is still possible.",
        "Quick request.",
        "Hoping you can help with this one.",
    ],
    extras=[
        "Please confirm once it's cancelled.",
        "Thanks for sorting it quickly.",
        "[o]It still says processing on my end.",
        "I'd appreciate a confirmation email.",
    ],
)

T["return_refund"] = dict(
    bodies=[
        "I'd like to return the {product} from {order}. {Reason}.",
        "How do I send back the {product}? {Reason}.",
        "I returned {order} {when_long} and still haven't got my refund. When will it be processed?",
        "Can I get a refund for the {product}? {Reason}.",
        "What's your return policy? I want to send back the {product} I got {when}.",
        "I dropped off my return {when_long}. Has it been received, and when will the refund hit my account?",
        "I need a return label for {order}.",
        "The {product} {isnt} for me. Can I return {obj} for a refund?",
        "Please start a return for {order}. {Reason}.",
        "Can I swap the {product} for a different colour? I'd send this one back.",
        "The refund for my returned {product} was supposed to take 5-7 days. It's been {days}. Where is it?",
        "I want my money back for the {product}. I've used {obj} twice and {it}'re just not for me.",
        "Can I return an opened item? I opened the {product} but never used {obj}.",
        "Your warehouse got my return {when_long}, but I still don't see a refund.",
        "I'd like to return everything in {order}. I bought it for a project that fell through.",
        "how long do i have to return stuff? want to send back the {product}",
        "Return request for the {product}: {reason}. Please email me a label.",
        "Do I have to pay return shipping on the {product}?",
        "I sent back the {product} {when_long}. Can you confirm you received {obj}?",
        "Can I return the {product} without the original box? I threw it out.",
        "I'd rather have a refund than store credit for the {product} I'm returning.",
        "My return for {order} shows as delivered to your warehouse {when_long}. When do I get my money back?",
        "I want to return the {product}; {it}'re still sealed.",
        "Please refund {order}, I've sent everything back.",
        "Nothing wrong with the {product}, {reason}. What's the process for a return?",
        "Is it possible to exchange the {product}? {Reason}.",
        "Where do I find the returns form? I'd like to send the {product} back.",
        "Has my refund for {order} been issued yet? The parcel went back {when_long}.",
        "I'd like to return the {product} and get the money back on my original card.",
        "Is the {product} eligible for return? {Reason}.",
        "The return portal won't let me select {order}. I want to send the {product} back.",
        "Can someone arrange a courier pickup for my return? It's the {product} from {order}.",
        "I've [printed the label|packed everything up] for the {product} return. Where do I drop it off?",
        "How long does a refund take once you've got the returned item? I sent the {product} back {when_long}.",
    ],
    contexts=[
        "Nothing wrong with the quality.",
        "I still have the receipt.",
        "Bit disappointed, honestly.",
        "First time I've had to return anything with you.",
    ],
    extras=[
        "Thanks for your help.",
        "Let me know what you need from me.",
        "I'm still well within the 30 days.",
        "Happy to drop it at a post office.",
    ],
)

T["damaged_item"] = dict(
    bodies=[
        "My {product} arrived and {defect}.",
        "The {product} from {order} {defect}.",
        "I just unboxed the {product} and {it} {defect}. Please advise.",
        "What do I do? The {product} {defect}. Can I get a replacement?",
        "Opened {order} today and the {product} {defect}. Not impressed.",
        "I'd like a replacement for my {product}, {it} {defect}.",
        "The {product} I received is faulty: {it} {defect}.",
        "[hard]The courier obviously dropped my parcel. The {product} inside {is} smashed.",
        "the {product} came damaged, i can send pics",
        "[hard]The {product} arrived with a huge dent in {obj}. The box was crushed too.",
        "Defective item on {order}: the {product} {defect}.",
        "Brand new {product} and {it} {defect}. Is this a known fault?",
        "Package turned up soaking wet and the {product} inside {is} ruined.",
        "[hard]The {product} look{s} used: scratches, fingerprints, and the seal on the box was already broken.",
        "Just got my {product} and unfortunately {it} {defect}.",
        "My {product} {defect}, straight out of the box. How do I get a replacement?",
        "Received {order} {when}. Sadly the {product} {defect}.",
        "The packaging was fine but the {product} {defect}. Manufacturing defect?",
        "The {product} {defect}. I've had {obj} less than a day.",
        "I got the {product} {when} and {it} {defect}. I want a replacement sent out, please.",
        "Reporting a fault with the {product}: {it} {defect}. This is from {order}.",
        "[Sadly|Unfortunately] the {product} I was sent {defect}. What are my options for a replacement?",
        "So the {product} showed up today and {it} {defect}. Can you send a new one?",
        "I think I got a dud. The {product} {defect}.",
        "Quality issue with {order}: the {product} {defect}.",
        "[hard]The {product} was clearly damaged in transit. {It} {defect}.",
        "Not happy. The {product} {defect} and I only took {obj} out of the box today.",
    ],
    contexts=[
        "Ordered from you loads of times and never had this before.",
        "I was really looking forward to this one.",
        "I've got photos if you need them.",
        "This was meant to be a gift.",
    ],
    extras=[
        "I have photos of the damage.",
        "I'd like a replacement as soon as possible.",
        "What's the next step?",
        "Pretty frustrating for something brand new.",
    ],
)

T["billing_issue"] = dict(
    bodies=[
        "I was charged twice for {order}.",
        "There's a charge of {amount} on my [card|statement] from you that I don't recognise.",
        "The checkout said {low} but my card was charged {amount} for {order}.",
        "Why was I charged {amount} when the {product} {was} on sale for {low}?",
        "I need a proper VAT invoice for {order}. The one I got has the wrong company name.",
        "You charged me shipping even though my order qualified for free delivery.",
        "My bank shows two payments for the same order, {order}. Please reverse one.",
        "I've been billed for the {product} and I never ordered {obj}.",
        "The discount code was accepted at checkout but the full price came off my card.",
        "Can you explain the extra {amount} on my statement? It doesn't match any order.",
        "I was charged {fee} for an extended warranty I never added.",
        "The invoice for {order} doesn't match what I actually paid.",
        "double charged on {order}!! please fix",
        "My card was charged even though the payment failed and {order} never went through.",
        "I need an invoice for {order} for my expense report and can't find one anywhere in my account.",
        "There are three charges from your store on my statement this week but I only placed one order.",
        "The tax on my invoice looks wrong, it seems to have been added twice.",
        "Why does my receipt for {order} show a {fee} 'handling fee'? That wasn't mentioned at checkout.",
        "I used a gift card for part of {order} but got charged the full amount on my credit card.",
        "Overcharged on {order}: the total should have been {low}, not {amount}.",
        "There's a pending charge of {amount} from you that never dropped off, even though I didn't complete the purchase.",
        "The {product} {was} listed at {low} but I was billed {amount}. Please correct the charge.",
        "I was charged for the {product} twice, but there was only one in my order.",
        "The invoice for {order} says {amount}, but my card statement says {low}. Which one is right?",
        "There's a {amount} debit from you dated the {nth} and I haven't bought anything this month.",
        "I got charged {fee} for express shipping but I picked standard delivery on {order}.",
        "The invoice you emailed me for {order} has someone else's name and address on it.",
        "Why is there a second charge of {amount} a day after I paid for {order}?",
        "Can you resend the invoice for {order}? The PDF link in the email is broken.",
        "I was billed {amount} for {order} but the confirmation email said {low}.",
    ],
    contexts=[
        "Not sure what happened here.",
        "This is the second time this has happened.",
        "Hope you can sort this out quickly.",
        "Something's not right with my payment.",
    ],
    extras=[
        "This needs sorting out.",
        "I'd like this fixed as soon as possible.",
        "Can you look into it?",
        "I can send a screenshot of the statement.",
    ],
)

T["payment_update"] = dict(
    bodies=[
        "How do I change the card on my account?",
        "My credit card [expired|has expired]. How can I update it?",
        "I'd like to add PayPal as a payment method.",
        "Can I switch the payment for {order} to a different card before it ships?",
        "My bank sent me a new card, so I need to update my payment details.",
        "Please remove my old Visa from my account. I want to use my Mastercard instead.",
        "How do I set a default payment method?",
        "I'd like to add Apple Pay to my account.",
        "My card on file expired and I want to replace it before my next order. Where do I do that?",
        "I want to delete my saved card details.",
        "My card ending {last4} was lost. I need to replace it with a new one on my account.",
        "Can I change the payment method on {order} from card to PayPal?",
        "Is there a way to pay by bank transfer instead of card? I'd like to update my payment method.",
        "Update my card details please, new expiry {expiry}.",
        "I want to use a different card for future orders.",
        "My company gave me a corporate card. How do I add it and make it the default?",
        "The 'edit payment' button doesn't do anything. I need to swap my card.",
        "Can I add Klarna as a payment option on my account?",
        "How do I replace the expired card on my account? The new one ends in {last4}.",
        "I'd like to swap my debit card for a credit card on my account.",
        "Where in settings do I update my card? The old one expires next month.",
        "Can you take my old card off my profile and add a new one? The old one ends {last4}.",
        "I need to update the expiry date and CVV on my saved card.",
        "Please set PayPal as my default instead of the Visa ending {last4}.",
        "My pre-order for the {product} will be charged soon and the card on file has expired. How do I put a new one on?",
        "Can I add a second card to my account as a backup?",
        "How do I switch from paying by card to Google Pay?",
        "I'd like to remove PayPal from my account and go back to paying by card.",
        "The card on my account is my old joint card. I need to change it to my own.",
        "Where can I manage my saved payment methods? I want to add a new Amex.",
    ],
    contexts=[
        "Quick question.",
        "Sorry if this is obvious.",
        "I'm about to place another order.",
        "Hopefully an easy one.",
    ],
    extras=[
        "Thanks in advance for the help.",
        "I couldn't find it in the settings.",
        "Is that something I can do myself?",
    ],
)

T["account_access"] = dict(
    bodies=[
        "I can't log in to my account.",
        "I forgot my password and the reset email never arrives.",
        "My account is locked after too many attempts.",
        "I got a new phone and can't get the 2FA code anymore.",
        "The login page keeps saying 'invalid credentials' but I know my password is right.",
        "The password reset link says it's expired every time I click it.",
        "I think someone hacked my account. The password was changed and I can't get in.",
        "I don't have access to the email on my account anymore. How do I log in?",
        "I get logged out immediately after I log in.",
        "The verification code SMS never comes through.",
        "How do I reset my password?",
        "It says there's no account with my email, but I've ordered from you loads of times.",
        "I can't sign in on the app, even though the website works.",
        "I want to check {order} but I can't log in.",
        "My account was locked for 'suspicious activity'. Can you unlock it?",
        "I lost my authenticator app and need two-factor turned off so I can log in.",
        "The captcha keeps failing so I can't log in.",
        "The reset link goes to an old email I can't access.",
        "I'm locked out of my account again.",
        "The 'forgot password' button doesn't send anything.",
        "I'm stuck on the two-step verification screen and can't get into my account.",
        "Every time I try to sign in it just reloads the login page.",
        "I can't [get into|access] my account. It says my password is wrong, but I literally just reset it.",
        "My login [isn't working|doesn't work] in any browser. Can you help?",
        "I'm not getting the one-time code [by email|by text], so I can't sign in.",
        "The app says 'account disabled' when I try to log in.",
        "Can you send me a password reset link? The one on the site doesn't do anything.",
        "I set up two-factor with an old phone number and now I'm stuck at login.",
        "How do I recover my account? I can't remember which email I signed up with.",
        "I was signed out of my account and now my password doesn't work.",
    ],
    contexts=[
        "Not sure what changed.",
        "This started {when}.",
        "I've had this account for years.",
    ],
    extras=[
        "Please help me get back in.",
        "This is really frustrating.",
        "My username is the email I'm writing from.",
    ],
)

T["change_address"] = dict(
    bodies=[
        "I need to change the delivery address for {order}.",
        "I moved last week. Can you send {order} to my new address: {address}?",
        "I entered the wrong postcode for {order}. Can you fix it before it ships?",
        "Can I have the {product} shipped to my office instead of home?",
        "Please update the shipping address on my account to {address}.",
        "There's a typo in the street name on {order}. It should be {address}.",
        "Can you redirect {order} to my parents' address? I'll be away.",
        "Is it too late to change where {order} is going?",
        "I'd like {order} delivered to a pickup point instead of my flat.",
        "I left out my apartment number on {order}. It's [4B|12|3C].",
        "change delivery address pls, new one is {address}",
        "My default shipping address is still my old place. How do I change it?",
        "Can the {product} go to {address} instead of the address on the order?",
        "Please change the shipping address on {order} to {address}.",
        "I picked the wrong saved address for {order}. Can you switch it to my home address?",
        "Could you update the delivery address on {order}? I won't be at the old one anymore.",
        "Can you ship {order} to my work address instead? Nobody's home during the day.",
        "The address on {order} is out of date. The correct one is {address}.",
        "I'd like to change the delivery address on my {product} order to {address}.",
        "How do I update the address on an order that's already been placed?",
        "Please send {order} to my new flat instead: {address}.",
        "I'd like {order} sent to my sister's place instead. Her address is {address}.",
        "The house number on {order} is wrong. It should be {hn}, not {hn2}.",
        "I need to change the shipping address on the {product} I just ordered. It's going to my old place.",
        "Can you update my address before {order} is dispatched? New one: {address}.",
        "I've moved, so please change the delivery address for {order} and on my account.",
        "Wrong city on {order}! Can it be changed to {address}?",
    ],
    contexts=[
        "Bit of a mix-up on my end.",
        "Sorry, my mistake at checkout.",
        "[o]I don't want to cancel the order.",
        "Hope this is still possible.",
    ],
    extras=[
        "[o]It hasn't shipped yet as far as I can tell.",
        "Please confirm once it's updated.",
        "[o]Everything else on the order can stay the same.",
    ],
)

T["product_info"] = dict(
    bodies=["__PRODUCT_Q__"],  # special: per-category questions (see PRODUCT_Q)
    contexts=[
        "Thinking about ordering this week.",
        "Before I order:",
        "Quick question before I buy.",
        "Trying to decide on a gift.",
        "The product page doesn't say.",
        "Comparing a few options at the moment.",
    ],
    extras=[
        "Thanks in advance, planning to order soon.",
        "The listing doesn't mention it.",
        "That'll decide whether I buy it.",
        "I'd order today if so.",
    ],
)

T["talk_to_human"] = dict(
    bodies=[
        "Can I talk to a real person please?",
        "I want to speak to a human, not a bot.",
        "Is there a phone number I can call?",
        "[bare]agent",
        "[bare]representative please",
        "Please have someone call me back on {phone}.",
        "Transfer me to a live agent.",
        "This chatbot isn't understanding me. Get me a human.",
        "I've been going around in circles with automated replies. I need an actual person to look at {order}.",
        "Can a supervisor contact me?",
        "Is there live chat with a real agent?",
        "I'd rather explain this over the phone. Can someone ring me on {phone}?",
        "How do I reach customer service by phone?",
        "Connect me with a customer service rep.",
        "Can I get a callback tomorrow morning?",
        "I need to speak with a manager.",
        "I'd like a human agent to handle my question about {order}, please.",
        "Can someone from your team phone me? It's easier than typing it all out.",
        "Please put me through to a person.",
        "Is there any way to talk to a real human at your company?",
        "I want to speak to someone directly about {order}. Not a bot.",
        "I'd like to speak to [someone|a person] on your customer service team, please.",
        "Is it possible to get a real agent on live chat?",
        "I need a human to look at this, the bot can't help with my situation.",
        "Please have a [manager|team lead] call me on {phone}.",
        "Can I book a phone call with customer support?",
        "Put me in touch with an actual person please, I've been going back and forth with the assistant for ages.",
        "Do you have a customer service phone line? I'd like to speak to someone today.",
        "[bare]Escalate to a human please.",
    ],
    contexts=[
        "I've tried the help centre already.",
        "The automated answers aren't helping.",
        "This is my third message.",
        "It's complicated to explain in writing.",
    ],
    extras=[
        "This is urgent.",
        "I've been waiting long enough.",
        "The FAQ didn't cover my situation.",
    ],
)

GREETINGS = ["Hi,", "Hello,", "Hey there,", "Good morning,", "Hi team,", "hi", "Hello support,",
             "Hiya,", "Hey,", "Good afternoon,", "Hi all,", "Morning,", "Hello there,"]
CLOSINGS = ["Thanks!", "Thank you.", "thx", "Cheers.", "Appreciate it.", "Thanks in advance.",
            "Please get back to me soon.", "Regards, {name}", "- {name}", "Kind regards, {name}",
            "Thanks, {name}", "Many thanks.", "Ty", "Cheers, {name}", "Best, {name}"]

# ---------------------------------------------------------------------------
# Fully hand-written one-off messages for the main file
# ---------------------------------------------------------------------------
HAND = {}
HAND["order_status"] = [
    "where's my package??",
    "hi, ordered a Nova 6 smartwatch last monday and tracking hasn't moved since wednesday. is it stuck somewhere?",
    "Order #48213 — any update? The site just says 'processing' and it's been 6 days.",
    "Good afternoon. I placed an order for the CozyKnit throw blanket on the 2nd and was told it would arrive within 3-5 business days. Today is the 11th. Could you please let me know where it is?",
    "tracking number pls for ord no. 55120",
    "Still no sign of my parcel. It's a birthday present for my daughter on Saturday and I'm starting to panic. Order 1029384.",
    "Has the BrewMaster Duo espresso machine I ordered actually shipped, or is it still sitting in your warehouse?",
    "The courier site says 'exception' for my order 77120 and nothing else. What does that mean and when will it actually get to me?",
    "when will it arrive",
    "is my order shipped yet or not",
    "Hello! Just wondering roughly when the Atlas standing desk will turn up. It's a big delivery so I want to make sure someone's home.",
    "My tracking says 'delivered to mailroom' but my building doesn't have a mailroom?? where is my stuff",
    "It's been two weeks. TWO WEEKS. Where is order ORD-558102?",
    "Can you tell me if both items in my order are coming together or separately? I got a shipping email for the hoodie but not the kettle.",
    "eta on my order? #60418",
    "Hey, the Pulse Buds 3 I ordered were supposed to arrive yesterday. Nothing came and there's no card from the driver. Any idea what happened?",
    "Is there any way to see where my parcel is right now? The tracking link just gives me a 404 page.",
    "order 88213 shows shipped on the 4th but no movement since. can u check with ups",
    "Hi there, I'm not asking to change anything, I just want to know if my order is still on track for Friday. Thanks!",
    "I'll probably want to return the jacket later if it doesn't fit, but first it has to actually arrive. Where is order 30917?",
    "Got an email saying my parcel is 'with local courier' three days ago. What's the holdup?",
]
HAND["cancel_order"] = [
    "cancel my order",
    "pls cancel order 44190 asap, it was a mistake",
    "Hi, I ordered the Halo 27 monitor about twenty minutes ago and my partner just told me he already bought one. Can you cancel mine before it gets packed?",
    "I want to cancel. Your site says 'estimated delivery 3-4 weeks' for the Atlas standing desk, which nobody told me at checkout.",
    "Don't ship order #51877. I'd like it cancelled please.",
    "How do I cancel something I just bought? The order page has no cancel option.",
    "Please cancel the CrispAir 5L air fryer from order 1183402. The rest of the order can go ahead as normal.",
    "Ordered the wrong thing by mistake. cancel it pls, it hasn't shipped",
    "Hello, my son used my account to order a Stratus K7 keyboard without asking. The order hasn't shipped yet. I'd like to cancel it. Thank you.",
    "I placed two identical orders by accident (#62017 and #62018). Please cancel the second one.",
    "Can I still cancel if the status says 'preparing for dispatch'?",
    "I'm cancelling order 9921034. Found the same blender for half the price at a local shop. Please confirm.",
    "FORGET IT, just cancel the order. Not waiting 4 weeks for a pair of slippers.",
    "Good morning, I would like to cancel my recent order (ref 73302) as my plans have changed. It has not yet been dispatched according to my account. Kind regards, Helen",
    "cancel the slippers from my order, keep the rest",
    "Is it possible to cancel a pre-order? I pre-ordered the Quill Paper e-reader but don't want it anymore.",
    "I want to cancel order #40077 before it ships. I'll place a new one with the right address later.",
    "Stop my order!! I hit buy by accident on the app.",
    "Can you cancel my order and refund the card? It hasn't even shipped yet.",
    "need to cancel order ORD-602215, changed my mind",
    "i just ordered the marlow sweater in the wrong colour by accident, can you cancel it before it goes out",
]
HAND["return_refund"] = [
    "how do i return something",
    "I'd like to send back the Marlow wool sweater. It's lovely but way too itchy for me.",
    "Where's my refund? I returned the Zephyr tower fan on the 3rd and UPS shows you signed for it on the 6th.",
    "Can I return the TrailRunner Pro shoes if I've worn them outside once? They just don't feel right.",
    "refund status for return on order 1029384?",
    "Hi, I received the Drift linen duvet cover as a gift and would like to return it for store credit. I don't have the order number, only the gift receipt.",
    "I got the Ridge 30L hiking backpack 25 days ago. Am I still inside the return window?",
    "You told me the refund for my return would be back on my card in 5 business days. It's been 12. Nothing.",
    "Hello, I'd like to return the whole order (#55981). I bought the wrong model of the Flux USB-C hub and it doesn't work with my laptop's ports.",
    "i want my money back for the pillow. slept on it a week, hate it",
    "What's the process for returns? Do I need to print a label or do you send one?",
    "I returned two items from order 80234 but only got refunded for one. The missing one is the Summit rain jacket.",
    "Can I swap the Meadow cotton hoodie for a size smaller? Happy to send this one back.",
    "The return label isn't attached to my confirmation email. How am I supposed to send the lamp back?",
    "Bought the Nova 6 smartwatch, works perfectly, I just don't wear it. Can I return it for a refund?",
    "The blender is fine, nothing wrong with it, I just don't have the counter space. How do I return it?",
    "Hi! Quick one: is return shipping free or do I have to pay for it? Looking to send back a pair of Cloudstep slippers.",
    "Refund please. Sent the stuff back last week.",
    "I changed my mind about the ChefMate knife set. It's still in the sealed box. Can I get a full refund?",
    "I'm still waiting on the refund for the jacket I sent back a month ago, and honestly I'm about to dispute it with my bank.",
    "Is there a restocking fee if I return the Perch office chair? It's assembled but barely used.",
]
HAND["damaged_item"] = [
    "my blender came smashed",
    "The screen on my Nova 6 smartwatch was cracked when I took it out of the box. Order #48870.",
    "Box showed up crushed and the CrispAir air fryer inside has a massive dent on the side. Can you send a replacement?",
    "the kettle leaks. brand new. first use. great.",
    "Hi, unfortunately the Terra ceramic planter set arrived with two of the three pots in pieces. The packaging had almost no padding. Can you help?",
    "Opened my Drift duvet cover and there's a big yellow stain on it. It looks like it's been used.",
    "The earbuds I got only work on one side. Left bud is completely silent.",
    "My Atlas standing desk arrived and one of the legs is bent, so the whole desk wobbles badly. I'd like a replacement leg or a new desk.",
    "Received the Lumen desk lamp today. It flickers constantly and then switches itself off. Defective?",
    "The TrailRunner Pro shoes I received have glue all over the toe and one sole is already coming off. Not okay for $140 shoes.",
    "Package came soaking wet and the CozyKnit blanket inside smells of mildew.",
    "Is it normal for a brand-new VoltMax power bank to get extremely hot while charging? Mine's almost too hot to touch.",
    "Got my order today, the glass carafe on the BrewMaster is cracked right down the middle.",
    "Zip on the Summit rain jacket snapped the first time I did it up. What should I do?",
    "Hi there, the Halo 27 monitor has a line of dead pixels down the left side. Just took it out of the packaging. Order 1139920.",
    "keyboard arrived with 3 keys that don't register. this is a new one???",
    "Half the knives in the set are rusty. They came like that.",
    "I'm happy with how fast it came, but the Orbit Mini speaker crackles and distorts at any volume. It's faulty.",
    "My Pebble tracker won't pair at all, tried two different phones. Pretty sure it's dead on arrival.",
    "The strap on the Ridge backpack was torn clean through when I opened the parcel.",
    "THE CHAIR ARRIVED WITH A SNAPPED ARMREST. Order 2290417. Please send the part.",
]
HAND["billing_issue"] = [
    "why was i charged twice",
    "There's a $64.99 charge from your store on my credit card statement and I haven't ordered anything from you in months.",
    "Hi, my bank shows two identical payments of $212.40 for order 1029384. I only placed the order once. Please reverse the duplicate.",
    "The promo code SPRING20 showed as applied at checkout but I was charged full price.",
    "My invoice for order #55120 lists the wrong billing name and I need it corrected for my company's accounts.",
    "I got charged shipping ($9.95) even though my cart was over the free shipping threshold.",
    "The payment failed on the site, so I placed the order again. Now I can see both charges went through.",
    "Where do I download an invoice for my order? My employer needs one and there's nothing in my account.",
    "hey so my statement says $349 but the Atlas desk was $299 on your site when I bought it??",
    "I never agreed to the $19.99 'premium protection plan' that's on my receipt. Please remove it.",
    "Hello, we were charged sales tax on an order shipped to a tax-exempt charity, even though we provided the exemption certificate. Please reissue a corrected invoice.",
    "Three pending charges for one order. What is going on with your payment system?",
    "I paid with a gift card plus my Visa, but the full amount went on the Visa AND the gift card balance is now zero.",
    "I was charged in euros instead of dollars and my bank added a conversion fee. The site showed USD prices the whole time.",
    "The price on the product page was $39 and my confirmation says $49. Why was I charged the higher amount?",
    "Got an invoice for an order I cancelled last month. Why am I still being billed?",
    "I'm seeing a random $1.00 charge from your company on my card. I didn't buy anything, what is it?",
    "Overcharged on order 66104. Please fix.",
    "Your invoice PDF shows a different total than what was actually taken from my account.",
    "My card was charged for the Orbit speaker but the order shows as 'payment failed' and never went through.",
    "I was billed for 3 bath towel sets. My order confirmation clearly says 1.",
]
HAND["payment_update"] = [
    "how do i change my card",
    "My Visa expired at the end of last month. Where do I put the new expiry date?",
    "Can I add PayPal to my account? I don't like storing card details online.",
    "I lost my debit card and the bank sent a new one. Need to swap it on my account so my pre-order doesn't fail.",
    "Hi, please remove the Mastercard ending 8812 from my saved payment methods.",
    "Want to switch my default payment from card to PayPal.",
    "The 'Add payment method' button just spins forever. I'm trying to add a new Amex.",
    "Is it possible to change the payment method on an order that hasn't shipped? I'd rather use my other card for it.",
    "new card, same bank, different number. how do i update",
    "Good evening, my company has issued me a new corporate card. Could you tell me how to replace the one currently saved on my business account?",
    "Do you take Apple Pay? If so, how do I set it as my default?",
    "Please update my card on file. The old one was compromised and my bank cancelled it.",
    "I'd like to pay for future orders with Klarna instead of my credit card. How do I set that up?",
    "I keep getting 'card expired' at checkout even though I added a new card. How do I delete the old one?",
    "Can I have two cards saved and pick one at checkout?",
    "Update payment info: new card exp 11/28. Thanks",
    "My husband and I share the account, and I'd like to replace his card with mine as the main payment method.",
    "The card saved to my account expires next week. Can I update it now so nothing bounces?",
    "Where in the app do I edit payment methods? I've looked everywhere.",
    "Could you help me link PayPal instead of my card? Checkout won't let me add it.",
    "I want to pay with a different card this time and keep it saved for next time too. How?",
]
HAND["account_access"] = [
    "cant log in",
    "I've reset my password three times and it still says 'incorrect password'. What's going on?",
    "Locked out of my account after too many tries. How long until I can log in again?",
    "I changed phones and now I'm not getting the two-factor code. I can't get past the verification screen.",
    "My account email is my old work address, which I no longer have access to. How can I log in?",
    "password reset email never arrives, checked spam",
    "Someone changed my password and email. I got a notification and now I can't sign in at all. I think my account was hacked, please help.",
    "Hi, the app keeps logging me out every time I close it and then won't accept my password.",
    "Your site says my account has been 'temporarily suspended'. I haven't done anything wrong. How do I get back in?",
    "I want to check where my order is but I can't even log in. The forgot password link does nothing.",
    "the reset link says 'token expired' the second I click it",
    "How do I turn off 2FA? I lost the phone with the authenticator app on it.",
    "Sign in with Google isn't working for me anymore. It just loops back to the login page.",
    "it says no account found for my email but i literally have orders on it",
    "Hello, I need to update my card but I can't log in to do it. The page keeps telling me my session expired.",
    "Login broken? Getting 'something went wrong' on every attempt.",
    "I never receive the SMS code. My number is correct on my account.",
    "Can you unlock my account please. Username jess.parker88",
    "Forgot my password. How do I reset it?",
    "I've been trying to get into my account for two days. Wrong password, reset, new password, still 'wrong password'. I'm losing my mind.",
]
HAND["change_address"] = [
    "wrong address on my order!! can i change it",
    "I just realised my order 1182034 is going to my old flat. I moved out last week. New address: 27 Willow Crescent, Apt 5, Leeds LS6 2PQ.",
    "Can you change the delivery address for #48213 to my office? 400 Market St, Suite 1200, San Francisco, CA 94105.",
    "Hi! I typed the zip code wrong, it should be 30309 not 30390. Order 77120.",
    "Is it possible to have my parcel delivered to my neighbour at number 14 instead? I'll be at work all week.",
    "Please update my default shipping address. I've moved to 9 Rosewood Lane, Bristol BS3 1AA.",
    "forgot to add my apartment number (4B) to the address on my order, can you add it?",
    "Going away for two weeks. Could you send order #60418 to my parents' house instead? 88 Harbour View Drive, Portland, ME 04101.",
    "I'd like to switch the delivery of my Atlas standing desk to a pickup point near me rather than my home address.",
    "Hello, the street name on my order is misspelled: it says 'Oakfeild Road' but it should be 'Oakfield Road'. Could you correct it before it ships?",
    "I know it's already shipped, but can you ask the courier to redirect it to my work address?",
    "Change shipping address on ORD-558102 to 14 Elm St, Apt 3, Boston MA 02116 thx",
    "My account still has my university address as the default. How do I change it so future orders come home?",
    "I don't want to cancel, I just need it to go somewhere else. Can you update the delivery address on order 52231?",
    "the address on my order is an old one, not where i live now. need to change it asap before it ships",
    "Could the KettlePro be delivered to my mum's address instead of mine? It's a present for her.",
    "Moving house on Saturday. Is there a way to make sure my order goes to the new place?",
    "Accidentally selected an old saved address at checkout. Can you change it to the one marked 'Home'?",
    "Wrong postcode on order 30917. It should be M14 5RB.",
    "Please send my order to the side entrance on Mill Lane instead of the shop front address, the shop will be closed that week.",
]
HAND["product_info"] = [
    "is the blender dishwasher safe",
    "Does the Nimbus 14 laptop sleeve fit a 14-inch MacBook Pro with a hard case on?",
    "Hi, what's the difference between the Pulse Buds 3 and the Pulse Buds 2? Is the noise cancelling better?",
    "Are the TrailRunner Pro shoes any good for actual trail running in the rain, or are they more for roads?",
    "When will the Halo 27 monitor be back in stock? I've been waiting weeks to buy one.",
    "Does the BrewMaster Duo take ground coffee or only pods?",
    "How heavy is the Lull weighted blanket? I need something under 7 kg.",
    "Will the Orbit Mini speaker work with Alexa?",
    "Do you have the Harbor denim jacket in a petite size?",
    "What's the max height of the Atlas standing desk? I'm 6'5.",
    "Looking for a power bank that can charge a laptop. Does the VoltMax 20000 support 65W USB-C PD?",
    "Is the Meadow hoodie 100% cotton or a blend? I react badly to some synthetics.",
    "hi does the air fryer come with a recipe book lol",
    "Does the PixelCast stick work with older TVs that don't have HDMI-CEC?",
    "Can the Ridge 30L backpack be taken as carry-on on most airlines?",
    "Which colours does the CozyKnit throw come in? The photos only show grey.",
    "Is the ChefMate knife set stainless or carbon steel? And does it come with a block?",
    "Before I order: is the Solace pillow okay for side sleepers?",
    "Do the Cloudstep slippers have a hard sole? Like could I wear them outside to take the bins out?",
    "Planning to order two, but first: is the Nova 6 smartwatch waterproof enough for swimming?",
    "Does the Breeze 300 air purifier cover a 40 m² room? The listing doesn't say.",
]
HAND["talk_to_human"] = [
    "human please",
    "AGENT",
    "Can I talk to a real person? The bot keeps sending me the same FAQ link.",
    "Is there a phone number for customer service? I'd rather just call.",
    "I've explained my problem three times to this chat. Please transfer me to an actual human.",
    "Could someone from your team call me back? My number is (555) 013-2291, best after 5pm.",
    "I need to speak with a supervisor about how my case has been handled.",
    "This is about a refund but it's complicated and involves three different orders. I'd really prefer to talk it through with a person.",
    "representative",
    "Hi, I'm 78 and not great with computers. Is there someone I can speak to on the telephone?",
    "Do you have live chat with real agents or is it all automated?",
    "Stop sending me canned responses and get me someone who can actually help.",
    "can i speak to someone",
    "I'd like a callback please, I can't stay on this chat.",
    "Connect me to a manager. Now.",
    "Please escalate this to a human agent. Order #48213, I'm not repeating the details again.",
    "What hours is your phone support open? I want to talk to someone today.",
    "Is anyone actually there? I need a real person, not a chatbot.",
    "Can I get someone on the phone about my account? This email back-and-forth is taking forever.",
    "Your bot keeps misunderstanding me. Let me talk to a human about my billing problem.",
]

# ---------------------------------------------------------------------------
# Unseen set: different catalogue, different register (formal email / chat-speak)
# ---------------------------------------------------------------------------
UNSEEN = {}
UNSEEN["order_status"] = [
    "Subject: Delivery enquiry – order FW-20931\nDear Sir or Madam,\nI placed an order for a Fernwood oak bookcase on 4 March and was quoted a delivery window of 7–10 working days. As of today I have received neither the item nor any dispatch notification. I would be grateful if you could confirm the current status of the consignment.\nYours faithfully,\nR. Whitcombe",
    "yo wheres my dog bed lol ordered it like 2 wks ago 😭",
    "Good afternoon, could you kindly provide a tracking reference for my recent purchase (order no. KB-77812)? The confirmation email did not include one. Many thanks, Anita Rao",
    "hiii any update on my order?? the tracking page hasnt changed since tues",
    "To whom it may concern: my order of a Copperline saucepan set, reference 5520-AX, has been marked 'in transit' for eleven days. Please advise when I may expect delivery.",
    "bruh my candles were supposed to be here yesterday. where they at",
    "Dear Customer Care Team, I would like to enquire whether my order for the Rowan rattan armchair has been dispatched yet, as I need to arrange for someone to be at home. Regards, Mr D. Okafor",
    "ordered the kiddo blocks for my nephews bday on sat, will it get here in time or nah",
    "Subject: Status of order 0048-GH\nHello, could you confirm the expected delivery date for the above order? The website only shows 'processing'. Thank you, Lars",
    "tracking says 'held at depot' wat does that even mean, when do i get my stuff",
    "Kindly inform me of the present whereabouts of parcel TP-3391 (Tidepool swim goggles x3). It has not arrived within the advertised timeframe.",
]
UNSEEN["cancel_order"] = [
    "Subject: Cancellation request – order FW-31877\nDear Customer Service,\nI wish to cancel the above order, placed yesterday evening, as it was made in error. I understand it has not yet been dispatched. Please confirm the cancellation in writing.\nKind regards,\nElizabeth Hart",
    "plz cancel my order i clicked buy by accident 🙃 its the gaming chair",
    "Good morning. I no longer require the Copperline saucepan set ordered on Monday (ref CP-1182). Would you please cancel the order before shipment? Thank you.",
    "nvm dont want the armchair anymore, can u cancel b4 it ships",
    "Dear Sir/Madam, owing to a change in circumstances I must ask that my pending order no. 300-8812 be cancelled. I would appreciate confirmation that no dispatch will take place.",
    "cancel cancel cancel 😩 wrong watering can, hasnt shipped yet",
    "Hello, I have two open orders for the Marigold candle trio because the checkout page froze and I submitted it again. I should be grateful if you would cancel order MG-4410 and keep MG-4411.",
    "can i still cancel?? order says processing. its the skyline chair",
    "To the Orders Department: please treat this message as formal notice that I am withdrawing my order (reference GH-2209) prior to dispatch.",
    "ngl found the dog bed cheaper somewhere else so pls cancel mine, not shipped yet",
    "Subject: Please cancel pre-order\nHi there, I pre-ordered the Lantern Press cookbook but would now like to cancel it. Thanks very much, Tom",
]
UNSEEN["return_refund"] = [
    "Subject: Return of unwanted item\nDear Returns Team,\nI recently received the Rowan rattan armchair (order RW-5521). Although it is in perfect condition, it does not suit the room as I had hoped. Could you please advise on the procedure for returning it for a refund?\nWith thanks,\nCatherine Moss",
    "how do i send back the face serum, not my vibe tbh. havent opened it",
    "Dear Sir or Madam, I returned the Skyline gaming chair via your courier on 12 April and it was signed for on 15 April. I have yet to receive my refund and should be grateful for an update.",
    "refund where?? sent the goggles back 3 wks ago",
    "Good afternoon, may I exchange the Fernwood bookcase for the walnut finish? The oak is lovely but slightly too pale for our flooring. I'm happy to arrange the return.",
    "can i return the kiddo blocks if the box is opened? kids didnt even play w it",
    "Please could you issue a returns label for order 7731-BB? The cookbook was a duplicate gift.",
    "want my $$ back for the candles, returned them last wk, still nothing",
    "To whom it may concern: I am writing to request a refund for the Everpour watering can, which I returned unused within the 30-day period. Kindly confirm receipt of the returned item.",
    "is return shipping free? wanna send back the dog bed, my dog hates it lmao",
    "Subject: Refund outstanding – RMA 20931\nHello, your warehouse confirmed receipt of my return ten days ago but the refund has not yet appeared. Could you look into this? Regards, Imran",
]
UNSEEN["damaged_item"] = [
    "Subject: Item received damaged – order CP-8810\nDear Customer Services,\nThe Copperline saucepan set delivered this morning has a deep dent in the largest pan and the lid handle has snapped off. The outer carton was visibly crushed. I would be grateful if a replacement could be arranged.\nYours sincerely,\nMargaret Ellison",
    "bookcase came w a massive crack down the side 😤 not ok",
    "Good morning, the Marigold candle trio arrived with two of the three glass jars shattered. Please advise how to proceed.",
    "the gaming chair wheel snapped off first time i sat in it. brand new. wtf",
    "Dear Sir/Madam, the Bramble hose reel I received is defective: the crank handle will not turn and there is a split in the housing. Kindly arrange for a replacement.",
    "face serum bottle arrived leaking everywhere, half empty 😭",
    "Hello, I regret to report that the Kiddo Blocks set arrived with the box soaked through and many of the pieces warped. Could you send a replacement set?",
    "armchair showed up with one leg snapped. srsly??",
    "To the Customer Care Team: upon unpacking the Lantern Press cookbook I found that roughly forty pages are torn and the spine is broken. I would appreciate a replacement copy.",
    "goggles strap ripped straight outta the box lol. faulty much?",
    "Subject: Faulty watering can\nHi, the Everpour watering can I received leaks from the base seam as soon as it's filled. It appears to be a manufacturing defect. Thanks, Noor",
]
UNSEEN["billing_issue"] = [
    "Subject: Duplicate charge – order GH-3302\nDear Accounts Team,\nMy bank statement shows two charges of £84.50 dated 9 May relating to a single order. I should be grateful if you could investigate and reverse the duplicate payment.\nKind regards,\nPhilip Ames",
    "yo why did u charge me twice for the dog bed",
    "Good afternoon, I require a VAT invoice for order FW-2210 for my company's records. The receipt provided does not show your VAT number. Could you please issue a compliant invoice?",
    "there's a random charge from u guys on my card n i didnt buy anything?? explain",
    "Dear Sir or Madam, the amount debited for my order (£149.00) exceeds the price displayed at checkout (£129.00). I would appreciate an explanation and a correction.",
    "discount code worked at checkout but i got charged full price smh",
    "To whom it may concern: I have been billed a delivery charge of £12.99 despite selecting the free standard delivery option. Please correct this.",
    "charged me for 3 candle sets, i ordered 1. fix pls 🙄",
    "Hello, the invoice attached to my confirmation email is addressed to the wrong company. Could you reissue it to 'Harbourline Ltd'? Thank you.",
    "my card got charged but the order says failed?? so wheres my money",
    "Subject: Unrecognised transaction\nDear Team, I have noticed a payment of $37.20 to your company on 2 June which I do not recognise. Please let me know what this relates to. Regards, S. Fong",
]
UNSEEN["payment_update"] = [
    "Subject: Update to payment details\nDear Customer Services,\nMy previous credit card has expired and I have been issued a replacement. Could you advise how I may update the card details held on my account?\nKind regards,\nGeorge Liddell",
    "how do i add paypal? dont wanna use my card",
    "Good morning, I would like to remove the Visa card ending 2290 from my account and set my Mastercard as the default payment method.",
    "new card who dis 😅 need to swap it on my acc",
    "Dear Sir/Madam, please could you tell me whether it is possible to change the payment method for an order that has not yet been dispatched? I would prefer to pay by debit rather than credit card.",
    "can i pay w apple pay instead? how do i set that up",
    "To whom it may concern: our organisation's purchasing card has been replaced. Kindly advise how to update the saved payment method on our business account.",
    "card expired lol where do i put the new one",
    "Hello, I'd like to delete all stored card details from my profile. What's the best way to do that?",
    "wanna switch to klarna for my next orders, possible?",
    "Subject: Changing default card\nHi, I have two cards saved. How do I make the newer one my default so future orders use it? Thanks, Bea",
]
UNSEEN["account_access"] = [
    "Subject: Unable to access account\nDear Support Team,\nI have been unable to sign in to my account since Tuesday. Each attempt returns an 'invalid credentials' message, although I am certain the password is correct. I would be grateful for your assistance.\nYours faithfully,\nH. Brennan",
    "cant login 😩 says wrong password but its def right",
    "Good afternoon, I have requested a password reset on four occasions but no email has arrived, including in my junk folder. Could you please assist?",
    "acc locked?? tried too many times i guess. how do i get back in",
    "Dear Sir or Madam, I recently replaced my mobile phone and am no longer able to receive the two-step verification codes required to log in. Please advise how I may regain access.",
    "forgot pw and the reset link is broken, help",
    "To whom it may concern: I believe my account has been accessed without my authorisation, as the password and email address were changed without my knowledge. I am now unable to log in. Please investigate urgently.",
    "2fa code never comes thru, stuck on login screen",
    "Hello, your website informs me that my account has been deactivated. I have not requested this. Could you reactivate it so that I may log in?",
    "app keeps kicking me out every time i log in lol whats going on",
    "Subject: Login issue – no access to registered email\nHi, the email on my account belongs to a job I've left, so I can't receive reset links. How can I verify myself and get back in? Thanks, Joel",
]
UNSEEN["change_address"] = [
    "Subject: Amendment to delivery address – order RW-6620\nDear Customer Services,\nI have recently moved house and would be grateful if you could redirect the above order to my new address: 12 Alder Close, Harrogate HG2 7PQ.\nKind regards,\nFiona Grant",
    "put the wrong addy on my order 🤦 can u change it",
    "Good morning, please could you amend the shipping address on order GH-4471? The flat number is missing; it should read Flat 6, 31 Canal Street.",
    "can u send my order to my work instead of home? nobodys in during the day",
    "Dear Sir/Madam, I should like to update the default delivery address on my account to 5 Larch Avenue, Cardiff CF14 3NT, effective immediately.",
    "wrong zip on my order lol its 60614 not 60641",
    "To whom it may concern: I request that my pending order for the Skyline gaming chair be delivered to my daughter's residence rather than my own. I will supply the address on confirmation.",
    "moving this wknd, can the dog bed go to the new place?",
    "Hello, I mistakenly selected my old address at checkout for order MG-5012. Could this be changed to the address saved as 'Home'? Thank you.",
    "deliver to my mum's pls not mine, its a gift 🎁",
    "Subject: Change of delivery address\nHi, could order KB-9932 be sent to the parcel locker on Station Road instead of my house? Thanks, Priyanka",
]
UNSEEN["product_info"] = [
    "Subject: Product enquiry – Fernwood oak bookcase\nDear Sales Team,\nCould you please confirm the exact dimensions and the maximum load per shelf for the Fernwood oak bookcase? I intend to store a fairly heavy collection of reference books.\nMany thanks,\nDr Alan Pryce",
    "is the dog bed washable?? my dog is gross lol",
    "Good afternoon, is the Copperline saucepan set suitable for induction hobs?",
    "does the face serum have fragrance in it? sensitive skin here 🙈",
    "Dear Sir or Madam, could you advise whether the Rowan rattan armchair is suitable for outdoor use, or is it intended for indoors only?",
    "kiddo blocks ok for a 2 yr old or too small?",
    "To whom it may concern: I would be grateful to know when the Skyline gaming chair will be back in stock in the grey colourway.",
    "how many wicks r in the marigold candles, n how long do they burn",
    "Hello, does the Bramble hose reel come with the hose included, or is that sold separately?",
    "do the tidepool goggles fit adults or just kids",
    "Subject: Question before purchase\nHi, is the Lantern Press cookbook the hardback edition or the paperback? The listing is unclear. Cheers, Mo",
]
UNSEEN["talk_to_human"] = [
    "Subject: Request to speak with a representative\nDear Customer Services,\nI have corresponded with your automated assistant on several occasions without resolution. I would be grateful if a member of staff could telephone me on 01632 960427 at their earliest convenience.\nYours sincerely,\nGraham Tull",
    "can i talk to an actual human pls, bot is useless",
    "Good morning, would it be possible to arrange a call with a customer service advisor regarding a rather involved matter?",
    "real person plz 🙏",
    "Dear Sir/Madam, kindly provide a telephone number through which I may speak with a member of your customer service team.",
    "get me a human rn",
    "To whom it may concern: I wish to escalate my complaint to a supervisor. Please have a senior member of staff contact me.",
    "is there like a number i can call? typing all this out is too much",
    "Hello, I'd prefer to discuss my issue with a person rather than over chat. Could someone ring me back this afternoon?",
    "operator. OPERATOR. lol does this thing even have humans",
    "Subject: Callback request\nHi, could an agent give me a call tomorrow between 10 and 12? It's easier to explain over the phone. Thanks, Ruth",
]

# ---------------------------------------------------------------------------
# Style noise
# ---------------------------------------------------------------------------
MISSPELL = {
    "receive": "recieve", "received": "recieved", "address": "adress", "definitely": "definately",
    "package": "pakage", "delivery": "delivary", "cancel": "cancle", "refund": "refnud",
    "because": "becuase", "tomorrow": "tommorow", "account": "acount", "password": "pasword",
    "payment": "payement", "until": "untill", "really": "realy", "which": "wich",
    "would": "woudl", "there": "tehre", "please": "pleas", "immediately": "immediatly",
    "order": "oder", "tracking": "trackign", "shipped": "shiped", "weeks": "wekes",
    "warehouse": "warehose", "invoice": "invoce", "charged": "chraged", "still": "stil",
    "separately": "seperately", "anything": "anythign", "different": "diffrent",
}
SLANG = [(r"\bplease\b", "pls"), (r"\byou\b", "u"), (r"\byour\b", "ur"), (r"\bthanks\b", "thx"),
         (r"\bbecause\b", "bc"), (r"\bI'm\b", "im"), (r"\bdon't\b", "dont"), (r"\bcan't\b", "cant"),
         (r"\bit's\b", "its"), (r"\bhaven't\b", "havent")]


def typo_word(w: str, rng: random.Random) -> str:
    if w in MISSPELL and rng.random() < 0.7:
        return MISSPELL[w]
    i = rng.randint(1, len(w) - 2)
    op = rng.choices(["swap", "drop", "double"], weights=[5, 4, 1])[0]
    if op == "swap":
        return w[:i] + w[i + 1] + w[i] + w[i + 2:]
    if op == "drop":
        return w[:i] + w[i + 1:]
    return w[:i] + w[i] + w[i:]


def add_typos(text: str, rng: random.Random, n: int) -> str:
    tokens = re.split(r"(\s+)", text)
    idx = [i for i, t in enumerate(tokens) if re.fullmatch(r"[a-z]{4,}", t)]
    for i in rng.sample(idx, min(n, len(idx))):
        tokens[i] = typo_word(tokens[i], rng)
    return "".join(tokens)


def stylize(text: str, rng: random.Random, label: str) -> str:
    if rng.random() < 0.16:
        text = add_typos(text, rng, 1 if rng.random() < 0.75 else 2)
    if rng.random() < 0.1:
        for pat, rep in SLANG:
            text = re.sub(pat, rep, text)
    if rng.random() < 0.2:
        text = text.lower()
    if rng.random() < 0.25 and text.endswith("."):
        text = text[:-1]
    if label in ("order_status", "billing_issue", "damaged_item", "talk_to_human", "return_refund") \
            and rng.random() < 0.1:
        text = re.sub(r"\?$", "??", text)
        text = re.sub(r"\.$", "!", text)
    return text


# ---------------------------------------------------------------------------
# Rendering
# ---------------------------------------------------------------------------
class SafeDict(dict):
    def __missing__(self, key):  # surfaces template bugs
        raise KeyError(f"unknown slot {{{key}}}")


ALT = re.compile(r"\[([^\[\]]*\|[^\[\]]*)\]")
TAG = re.compile(r"^\[(hard|bare|o)\]")


def expand(template: str, rng: random.Random) -> str:
    return ALT.sub(lambda m: rng.choice(m.group(1).split("|")), template)


def fill(template: str, ctx: dict) -> str:
    t = template.replace("{is}", "{is_}").replace("{its}", "{its_}")
    return t.format_map(SafeDict(ctx)).replace("themself", "themselves").replace("it're", "it's")


def make_ctx(rng: random.Random, hard: bool = False) -> dict:
    pool = [p for p in PRODUCTS if p[1] in HARD_CATS] if hard else PRODUCTS
    name, cat, plural, compat = rng.choice(pool)
    ctx = dict(agreement(plural))
    reasons = RETURN_REASONS_GENERIC + RETURN_REASONS_CAT.get(cat, []) * 2
    reason = rng.choice(reasons)
    if plural:
        reason = (reason.replace("bought it", "bought them").replace("it's", "they're")
                  .replace("it was", "they were").replace("not needing it", "not needing them")
                  .replace("it doesn't", "they don't")
                  .replace("they already have one", "they already have a pair"))
    amount = rng.randint(25, 420)
    low = amount - rng.randint(5, min(80, amount - 10))
    hn = rng.randint(2, 180)
    ctx.update(
        product=name,
        order=order_ref(rng),
        when=rng.choice(WHEN),
        when_long=rng.choice(WHEN_LONG),
        window=rng.choice(WINDOW),
        days=rng.choice([str(rng.randint(8, 16)), rng.choice(["eight", "nine", "ten", "twelve"])]),
        deadline=rng.choice(DEADLINE),
        amount=f"${amount}.{cents(rng)}",
        low=f"${low}.{cents(rng)}",
        fee=f"${rng.randint(4, 24)}.{rng.choice(['99', '95', '50'])}",
        nth=rng.choice(["3rd", "7th", "12th", "19th", "22nd", "28th"]),
        hn=str(hn),
        hn2=str(hn + rng.choice([1, 10, -1]) if hn > 2 else hn + 1),
        address=rng.choice(ADDRESSES),
        name=rng.choice(NAMES),
        phone=rng.choice(PHONES),
        last4=f"{rng.randint(1000, 9999)}",
        expiry=f"{rng.randint(1, 12):02d}/{rng.randint(26, 30)}",
        platform=rng.choice(compat) if compat else None,
        reason=reason,
        Reason=reason[0].upper() + reason[1:],
        _cat=cat,
        _compat=compat,
    )
    ctx["defect"] = fill(rng.choice(DEFECTS[cat]), ctx)
    return ctx


def pick_product_question(ctx: dict, rng: random.Random) -> str:
    pool = PRODUCT_Q[ctx["_cat"]] + PRODUCT_Q_GENERIC
    if not ctx["_compat"]:
        pool = [q for q in pool if "{platform}" not in q]
    return rng.choice(pool)


NO_LOWER = {"I", "I'm", "I'd", "I've", "I'll"} | {p[0].split()[0] for p in PRODUCTS}


def join_parts(parts: list[str], greeting: bool) -> str:
    out = []
    for i, p in enumerate(parts):
        if i == 1 and greeting:
            first = p.split(" ", 1)[0]
            if first not in NO_LOWER and first[:1].isupper():
                p = p[0].lower() + p[1:]
        if i < len(parts) - 1 and not (i == 0 and greeting) and not re.search(r"[.?!,:]$", p):
            p += "."
        out.append(p)
    return " ".join(out)


def compose(label: str, body: str, rng: random.Random) -> str:
    spec = T[label]
    tag = TAG.match(body)
    tag = tag.group(1) if tag else None
    body = TAG.sub("", body)
    ctx = make_ctx(rng, hard=(tag == "hard"))
    if body == "__PRODUCT_Q__":
        body = pick_product_question(ctx, rng)
    has_order = "{order}" in body
    body_text = fill(expand(body, rng), ctx)
    if tag == "bare":
        return stylize(body_text, rng, label)

    def pick(options):
        opts = [o for o in options if has_order or not o.startswith("[o]")]
        return fill(expand(TAG.sub("", rng.choice(opts)), rng), ctx)

    parts = []
    greeting = rng.random() < 0.3
    if greeting:
        parts.append(rng.choice(GREETINGS))
    if rng.random() < 0.25:
        parts.append(pick(spec["contexts"]))
    parts.append(body_text)
    if rng.random() < 0.2:
        parts.append(pick(spec["extras"]))
    if rng.random() < 0.3:
        parts.append(fill(rng.choice(CLOSINGS), ctx))
    return stylize(join_parts(parts, greeting), rng, label)


def norm(text: str) -> str:
    return " ".join(text.lower().split())


def words(text: str) -> frozenset:
    return frozenset(re.findall(r"[a-z0-9']+", text.lower()))


def too_similar(cand: frozenset, existing: list, threshold: float = 0.75) -> bool:
    return any(len(cand & e) / len(cand | e) >= threshold for e in existing)


def build_main() -> list[dict]:
    rng = random.Random(SEED)
    seen: set[str] = set()
    rows: list[dict] = []
    for label in LABELS:
        hand = HAND[label]
        label_words = []
        for t in hand:
            k = norm(t)
            assert k not in seen, f"duplicate hand-written text: {t!r}"
            seen.add(k)
            label_words.append(words(t))
            rows.append({"text": t, "label": label})
        need = PER_LABEL - len(hand)
        bodies = list(T[label]["bodies"])
        made = 0
        attempts = 0
        while made < need:
            rng.shuffle(bodies)
            for body in bodies:
                if made >= need:
                    break
                attempts += 1
                assert attempts < 50000, label
                text = compose(label, body, rng).strip()
                k = norm(text)
                w = words(text)
                if k in seen or too_similar(w, label_words):
                    continue
                seen.add(k)
                label_words.append(w)
                rows.append({"text": text, "label": label})
                made += 1
    random.Random(SEED + 1).shuffle(rows)
    return rows


def build_unseen() -> list[dict]:
    rows = [{"text": t, "label": label} for label in LABELS for t in UNSEEN[label]]
    random.Random(SEED + 2).shuffle(rows)
    return rows


def write_jsonl(path: Path, rows: list[dict]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8", newline="\n") as f:
        for r in rows:
            f.write(json.dumps({"text": r["text"], "label": r["label"]}, ensure_ascii=False) + "\n")


# ---------------------------------------------------------------------------
# Check
# ---------------------------------------------------------------------------
def load_and_validate(path: Path) -> list[dict]:
    raw = path.read_bytes()
    assert raw.endswith(b"\n"), f"{path} must end with a newline"
    rows = []
    for n, line in enumerate(raw.decode("utf-8").split("\n")[:-1], 1):
        obj = json.loads(line)
        assert isinstance(obj, dict) and set(obj) == {"text", "label"}, f"{path}:{n} keys {obj!r}"
        assert isinstance(obj["text"], str) and obj["text"].strip(), f"{path}:{n} empty text"
        assert isinstance(obj["label"], str) and obj["label"], f"{path}:{n} empty label"
        rows.append(obj)
    return rows


def check() -> None:
    main = load_and_validate(MAIN_PATH)
    unseen = load_and_validate(UNSEEN_PATH)
    for name, rows, lo, hi, tot in (("support_intents.jsonl", main, 90, 110, (950, 1050)),
                                    ("support_intents_unseen.jsonl", unseen, 10, 12, (100, 120))):
        c = Counter(r["label"] for r in rows)
        print(f"{name}: {len(rows)} examples")
        for lab in LABELS:
            print(f"  {lab:<15} {c[lab]}")
        assert set(c) == set(LABELS), f"{name}: label set {sorted(c)}"
        assert all(lo <= c[l] <= hi for l in LABELS), f"{name}: per-label counts out of range"
        assert tot[0] <= len(rows) <= tot[1], f"{name}: total {len(rows)}"
        keys = [norm(r["text"]) for r in rows]
        dups = [k for k, v in Counter(keys).items() if v > 1]
        assert not dups, f"{name}: {len(dups)} normalised duplicates, e.g. {dups[:3]}"
        print("  no normalised duplicates within file")
    cross = {norm(r["text"]) for r in main} & {norm(r["text"]) for r in unseen}
    assert not cross, f"cross-file duplicates: {sorted(cross)[:3]}"
    print("no normalised duplicates across files")
    leftover = [r["text"] for r in main + unseen if re.search(r"[{}]", r["text"])]
    assert not leftover, f"unfilled template slots: {leftover[:3]}"
    print("label set OK; every line has exactly keys text/label with non-empty strings")
    print("ALL CHECKS PASSED")


def main() -> None:
    if "--check" not in sys.argv:
        write_jsonl(MAIN_PATH, build_main())
        write_jsonl(UNSEEN_PATH, build_unseen())
        print(f"wrote {MAIN_PATH.relative_to(ROOT)} and {UNSEEN_PATH.relative_to(ROOT)}")
    check()


if __name__ == "__main__":
    main()
