#!/usr/bin/env python3
"""Generate data/raw/support_instructions.jsonl (Alpaca-style, synthetic).

Three tasks over messages sent to an invented online shop, 250 examples each:
  classify - message -> one of 10 intent labels
  extract  - message -> {"intent","order_id","product"} as compact JSON
  reply    - message -> short, polite first reply from a support agent

Messages are assembled from hand-written fragments (openers, intent-specific
core sentences with order/product slots, context sentences, closers) plus
light noise (lower-casing, common typos, dropped apostrophes). The order
number and product are inserted from variables, and the extraction labels are
built from those same variables, then verified against the text.

Usage:
    python3 data/tools/make_support_instructions.py          # write + check
    python3 data/tools/make_support_instructions.py --check  # check only
"""
from __future__ import annotations

import argparse
import json
import random
import re
import sys
from collections import Counter
from pathlib import Path

SEED = 20241129
PER_INTENT_PER_TASK = 25  # 10 intents x 25 x 3 tasks = 750 examples

ROOT = Path(__file__).resolve().parents[2]
OUT_PATH = ROOT / "data" / "raw" / "support_instructions.jsonl"
INTENTS_PATH = ROOT / "data" / "raw" / "support_intents.jsonl"
# Sibling intent-classification files (written by others). Our inputs must not repeat their texts;
# the *_unseen file looks like a held-out set, so it is avoided as well to prevent leakage.
AVOID_PATHS = [INTENTS_PATH, ROOT / "data" / "raw" / "support_intents_unseen.jsonl"]

LABELS = [
    "order_status", "cancel_order", "return_refund", "damaged_item", "billing_issue",
    "payment_update", "account_access", "change_address", "product_info", "talk_to_human",
]
TASKS = ["classify", "extract", "reply"]
LABEL_LIST = ", ".join(LABELS)

INSTRUCTIONS = {
    "classify": [
        f"Classify the customer message into one of these intents: {LABEL_LIST}. Answer with the intent only.",
        f"Which intent does this customer message belong to? Choose one of: {LABEL_LIST}. Reply with the intent label only.",
        f"Label the intent of the following customer message. Possible intents: {LABEL_LIST}. Output only the intent.",
        f"Read the customer message and assign exactly one intent from this list: {LABEL_LIST}. Respond with just the intent name.",
    ],
    "extract": [
        "Extract the support ticket from the message as JSON with the keys intent, order_id and product.",
        "Turn this customer message into a support ticket. Return JSON with the keys intent, order_id and product.",
        "From the customer message below, extract a support ticket as JSON with keys intent, order_id, product.",
        "Read the message and output the support ticket as JSON (keys: intent, order_id, product).",
    ],
    "reply": [
        "Write a short, polite first reply to this customer message.",
        "Draft a brief, friendly first response to the customer message below.",
        "As a support agent, write a short and polite first reply to this message.",
        "Reply to this customer message with a short, courteous first response.",
    ],
}

# (probability of an order number, probability of a product name) per intent
PRESENCE = {
    "order_status": (0.80, 0.65),
    "cancel_order": (0.75, 0.70),
    "return_refund": (0.70, 0.80),
    "damaged_item": (0.65, 0.95),
    "billing_issue": (0.55, 0.50),
    "payment_update": (0.30, 0.30),
    "account_access": (0.15, 0.20),
    "change_address": (0.70, 0.45),
    "product_info": (0.00, 1.00),
    "talk_to_human": (0.40, 0.40),
}

# ---------------------------------------------------------------------------
# Invented catalogue: (full name, short name, category)
# ---------------------------------------------------------------------------
PRODUCTS = [
    ("AeroBlend X2 blender", "AeroBlend X2", "kitchen_appliance"),
    ("BrewMaster 300 coffee maker", "BrewMaster 300", "kitchen_appliance"),
    ("Kettlo Pro electric kettle", "Kettlo Pro", "kitchen_appliance"),
    ("CrispAir 5L air fryer", "CrispAir 5L", "kitchen_appliance"),
    ("ToastLine 4-slice toaster", "ToastLine toaster", "kitchen_appliance"),
    ("WhirlChef stand mixer", "WhirlChef mixer", "kitchen_appliance"),
    ("GlowMist facial steamer", "GlowMist steamer", "personal_appliance"),
    ("Silkwave hair dryer", "Silkwave dryer", "personal_appliance"),
    ("Nimbus ANC headphones", "Nimbus ANC", "audio"),
    ("PulseBuds Mini earbuds", "PulseBuds Mini", "audio"),
    ("Boomcube portable speaker", "Boomcube speaker", "audio"),
    ("Pulse Fit 3 smartwatch", "Pulse Fit 3", "wearable"),
    ("Stride Lite fitness band", "Stride Lite", "wearable"),
    ("VoltGo power bank", "VoltGo", "gadget"),
    ("Orbit wireless charging pad", "Orbit pad", "gadget"),
    ("SnapView 4K webcam", "SnapView 4K", "gadget"),
    ("Lumi LED desk lamp", "Lumi lamp", "gadget"),
    ("Starlight galaxy projector", "Starlight projector", "gadget"),
    ("TrailFlex running shoes", "TrailFlex shoes", "shoes"),
    ("Summit Peak hiking boots", "Summit Peak boots", "shoes"),
    ("Nordhaven rain jacket", "Nordhaven jacket", "apparel"),
    ("CozyLoom merino sweater", "CozyLoom sweater", "apparel"),
    ("Breeze linen shirt", "Breeze shirt", "apparel"),
    ("FlexFit yoga leggings", "FlexFit leggings", "apparel"),
    ("Voyager 40L backpack", "Voyager 40L", "bag"),
    ("Metro laptop sleeve", "Metro sleeve", "bag"),
    ("Weekender duffel bag", "Weekender duffel", "bag"),
    ("Oslo oak side table", "Oslo side table", "furniture"),
    ("Harbor ergonomic office chair", "Harbor chair", "furniture"),
    ("Haven memory foam pillow", "Haven pillow", "textile"),
    ("Nest knit throw blanket", "Nest throw", "textile"),
    ("Drift bamboo bath mat", "Drift bath mat", "textile"),
    ("Aria ceramic vase", "Aria vase", "vase"),
    ("Terra stoneware dinner set", "Terra dinner set", "dinnerware"),
    ("SliceRight chef knife set", "SliceRight knives", "knives"),
    ("PanPro nonstick skillet", "PanPro skillet", "cookware"),
    ("Ridgeline 2-person tent", "Ridgeline tent", "tent"),
    ("Ember camping stove", "Ember stove", "stove"),
    ("Cascade insulated water bottle", "Cascade bottle", "bottle"),
    ("BuildIt magnetic tiles set", "BuildIt tiles", "toy"),
]

# dmg: clause describing damage/defect; q: verb phrase after "does it ...";
# rr: return reason sentence (never mentions damage).
CATEGORY = {
    "kitchen_appliance": dict(
        dmg=["it won't turn on", "the casing is cracked", "the power cable is frayed",
             "it makes a loud grinding noise", "one of the buttons has snapped off",
             "it smells like burning plastic as soon as I switch it on", "the lid is cracked"],
        q=["have dishwasher-safe parts", "fit under a standard kitchen cabinet", "have an automatic shut-off",
           "come with a warranty", "work with UK plugs", "come in other colours"],
        rr=["It's too bulky for my kitchen.", "It's louder than I expected.", "I ended up getting one as a gift.",
            "It's not what I expected."]),
    "personal_appliance": dict(
        dmg=["it won't turn on", "it cuts out after a few seconds", "the casing is cracked",
             "it smells like burning plastic when it's on", "the cord is frayed near the plug"],
        q=["have a travel case", "work on 110V", "come with a warranty", "have different heat settings"],
        rr=["It's heavier than I expected.", "I don't use it as much as I thought I would.", "It's not what I expected."]),
    "audio": dict(
        dmg=["one side has no sound", "it won't charge", "there's a constant crackling noise",
             "it won't pair with anything", "the sound cuts out every few seconds", "the charging port is loose"],
        q=["work with Android phones", "support multipoint Bluetooth", "have a microphone for calls",
           "last a full day on one charge", "come with a charging cable", "work with a laptop"],
        rr=["The sound isn't what I hoped for.", "I ended up buying a different model.", "It's not what I expected.",
            "It isn't comfortable for long periods."]),
    "wearable": dict(
        dmg=["the screen is cracked", "it won't charge", "the strap snapped on the first day",
             "the display flickers and goes black"],
        q=["track sleep", "work with iPhone", "have GPS built in", "survive swimming", "come with a spare strap"],
        rr=["It's too big for my wrist.", "I don't like how it looks on me.", "It doesn't do what I needed."]),
    "gadget": dict(
        dmg=["it won't turn on", "it stops working after a few minutes", "the casing is cracked",
             "it gets really hot and then shuts off", "the cable it came with doesn't work"],
        q=["come with a wall adapter", "work with a Mac", "need an app", "come with a warranty", "use USB-C"],
        rr=["I don't need it anymore.", "It's not what I expected.", "I bought the wrong model."]),
    "shoes": dict(
        dmg=["the sole is peeling off", "one of the laces is ripped", "the stitching on the heel is coming apart",
             "there's a tear in the fabric over the toe"],
        q=["run true to size", "come in half sizes", "work for wide feet", "come in other colours"],
        rr=["They're half a size too small.", "They pinch at the toes.", "I ordered the wrong size.",
            "The colour looks different in person."]),
    "apparel": dict(
        dmg=["the zip is broken", "there's a hole in one sleeve", "a seam is ripped", "there's a big stain on the front"],
        q=["run true to size", "come in XL", "shrink in the wash", "come in other colours", "have pockets"],
        rr=["It's too small.", "It doesn't fit.", "It's too big.", "The colour isn't what I expected.",
            "I ordered the wrong size."]),
    "bag": dict(
        dmg=["one of the straps is ripped", "the zip is broken", "there's a tear along the bottom seam",
             "the lining is torn"],
        q=["fit a 16-inch laptop", "have a waterproof lining", "come in other colours", "count as carry-on luggage"],
        rr=["It's smaller than I expected.", "It's not what I expected.", "I found one I like better."]),
    "furniture": dict(
        dmg=["one of the legs is snapped", "the top is badly scratched", "the wood is split along one side",
             "it wobbles because a leg is cracked"],
        q=["come assembled", "need tools to put together", "come in a darker finish", "have a weight limit"],
        rr=["It's too big for the space.", "The colour doesn't match my room.", "It's not what I expected."]),
    "textile": dict(
        dmg=["it has a big tear in it", "it arrived with a stain on it", "the stitching is coming apart",
             "there's a hole in it"],
        q=["go in the washing machine", "come in a larger size", "come in other colours", "have a removable cover"],
        rr=["The colour is different from the photos.", "It's smaller than I expected.", "It's not what I expected."]),
    "vase": dict(
        dmg=["there's a chip on the rim", "it arrived in pieces", "there's a crack running down the side"],
        q=["hold water without leaking", "come in other colours", "come in a larger size"],
        rr=["It's smaller than I expected.", "The colour doesn't go with my room.", "I changed my mind."]),
    "dinnerware": dict(
        dmg=["two of the plates are broken", "one of the bowls is cracked", "there's a chip on the rim of a plate"],
        q=["go in the dishwasher", "go in the microwave", "come with side plates"],
        rr=["The plates are bigger than I expected.", "The colour isn't what I expected.", "I changed my mind."]),
    "knives": dict(
        dmg=["the block is cracked", "one of the knives has a bent tip", "a handle is loose"],
        q=["go in the dishwasher", "come with a sharpener", "come with a storage block"],
        rr=["They're heavier than I'd like.", "I ended up getting a different set.", "I changed my mind."]),
    "cookware": dict(
        dmg=["the coating is peeling", "the handle is loose", "it's warped and won't sit flat"],
        q=["work on induction hobs", "go in the oven", "go in the dishwasher"],
        rr=["It's too small for what I cook.", "It's heavier than I expected.", "I changed my mind."]),
    "tent": dict(
        dmg=["one of the poles is snapped", "there's a rip in the rain fly", "the zip on the door is broken"],
        q=["come with stakes", "fit two adults comfortably", "pack small enough for a backpack", "handle heavy rain"],
        rr=["It's heavier than I expected.", "Our camping trip got cancelled.", "It's smaller inside than I hoped."]),
    "stove": dict(
        dmg=["the valve leaks", "the ignition button doesn't click", "it won't light"],
        q=["work with standard gas canisters", "come with a carry case", "fold down small"],
        rr=["Our camping trip got cancelled.", "It's bulkier than I expected.", "I changed my mind."]),
    "bottle": dict(
        dmg=["it leaks from the lid", "there's a big dent in the side", "the lid is cracked"],
        q=["keep drinks cold all day", "fit in a car cup holder", "go in the dishwasher", "come with a straw lid"],
        rr=["It's bigger than I expected.", "It doesn't fit my bag's side pocket.", "I changed my mind."]),
    "toy": dict(
        dmg=["several tiles are cracked", "the magnets fall out of some pieces", "a few pieces are snapped"],
        q=["suit a 3-year-old", "work with other magnetic tile brands", "come with a storage box"],
        rr=["My kid already has one.", "It was a duplicate gift.", "It's smaller than I expected."]),
}
GENERIC_DMG = ["the item inside is broken", "everything inside was smashed", "it doesn't work at all",
               "it's cracked", "half of it is broken", "it stopped working after one use"]
GENERIC_RR = ["It's not what I expected.", "I changed my mind.", "It doesn't fit.", "I ordered the wrong one.",
              "I don't need it anymore."]

# ---------------------------------------------------------------------------
# Message fragments. Slots: [O:fallback]  -> order reference or fallback
#                           [P:prefix|fallback] -> prefix + product, or fallback
# Flags: "s" = an order number may be appended as a separate sentence.
#        "a" = the template states the new address (change_address).
# Fields: {WHEN} {WHEN_SHORT} {DAY} {N} {DMG} {Q} {RR} {AMT} {AMT2} {PAY} {ADDR} {PC}
# ---------------------------------------------------------------------------
CORES = {
    "order_status": [
        ("Where is [O:my order]? It still hasn't arrived.", "where", ""),
        ("Can you tell me when [O:my order] will be delivered?", "when", ""),
        ("I ordered [P:the |some things] {WHEN} and it still hasn't shown up. Where is it?", "where", "s"),
        ("The tracking for [O:my order] hasn't updated in {N} days.", "tracking", ""),
        ("Any update on [O:my order]? The tracking link just says 'label created'.", "tracking", ""),
        ("when will my [P:|package] arrive", "when", "s"),
        ("Has [O:my order] shipped yet?", "shipped", ""),
        ("My [P:|order] {WAS} supposed to arrive {DAY} and nothing came. Can you check where it is?", "late", "s"),
        ("Could you give me a tracking number for [O:my order]?", "tracking", ""),
        ("It says delivered but I never got [O:my order]. Where is it?", "delivered", ""),
        ("What's the estimated delivery date for [P:the |the stuff I ordered]?", "when", "s"),
        ("still waiting on [O:my order]... any news?", "where", ""),
        ("I need [P:the |my order] by {DAY2} for a gift. Is it going to make it in time?", "when", "s"),
        ("Can you check the status of [O:my order]? It's [P:the |the parcel] I ordered {WHEN}.", "where", ""),
        ("The carrier site says my [P:|parcel] {IS} stuck in transit. What's going on?", "tracking", "s"),
        ("I placed [O:an order] {WHEN} and haven't had a shipping confirmation yet.", "shipped", ""),
        ("How long does delivery usually take? I'm still waiting for [O:my order].", "where", ""),
        ("[O:my order] was due {DAY}. Is it lost?", "late", ""),
        ("[P:The |The item] from [O:my order] still {HASNT} arrived.", "where", ""),
        ("Any idea when [O:my order] will get here? It's [P:the |a gift] for my sister.", "when", ""),
    ],
    "cancel_order": [
        ("Please cancel [O:my order].", "cancel", ""),
        ("I'd like to cancel [O:my order] before it ships.", "cancel", ""),
        ("I ordered [P:the |the wrong item] by mistake. Can you cancel it?", "cancel", "s"),
        ("cancel [O:my order] pls, ordered twice by accident", "cancel", ""),
        ("Can I still cancel [O:my order]? It hasn't shipped yet.", "cancel", ""),
        ("I changed my mind about [P:the |the order]. Please cancel it before it's sent out.", "cancel", "s"),
        ("I found [P:the |the same thing] cheaper elsewhere, so please cancel [O:my order].", "cancel", ""),
        ("Is it too late to cancel [O:my order]? I placed it {WHEN_SHORT}.", "cancel", ""),
        ("Please stop [O:my order] from shipping. I don't need [P:the |it] anymore.", "cancel", ""),
        ("I need to cancel [O:my order] because I won't be able to use it after all.", "cancel", ""),
        ("Cancel my order for [P:the |the items] please, it hasn't been dispatched.", "cancel", "s"),
        ("I bought [P:the |something] {WHEN_SHORT} and picked the wrong one. Please cancel it.", "cancel", "s"),
        ("How do I cancel [O:an order]? It still says processing.", "cancel", ""),
        ("I don't want [P:the |this order] anymore, please cancel before it ships.", "cancel", "s"),
        ("I'd like to cancel [O:my order] and just keep the money on my card.", "cancel", ""),
        ("Please cancel [O:my order], I ordered [P:the |the wrong item] by mistake.", "cancel", ""),
        ("I'd like to cancel [P:the |the item] on [O:my order].", "cancel", ""),
    ],
    "return_refund": [
        ("I'd like to return [P:the |an item] I bought. {RR}", "return", "s"),
        ("How do I return [P:the |my order]? {RR}", "return", "s"),
        ("I sent back [O:my order] {WHEN} and still haven't received my refund.", "refund", ""),
        ("When will I get my refund for [P:the |the return I sent]?", "refund", "s"),
        ("I want to return the [P:|item] from [O:my order]. {RR}", "return", ""),
        ("Can I get a return label for [O:my order]? {RR}", "return", ""),
        ("{RR} Can I send [P:the |it] back?", "return", "s"),
        ("What's the refund status for [O:my order]? I dropped the return off {WHEN}.", "refund", ""),
        ("My return for [O:my order] shows as received but there's no money back yet.", "refund", ""),
        ("Is it possible to return [P:the |something] after 20 days? {RR}", "return", "s"),
        ("I returned the [P:|item] {WHEN}. Has the refund been processed?", "refund", "s"),
        ("{RR} How do I get a refund for [P:the |it]?", "return", "s"),
        ("need to return [O:my order], whats the process", "return", ""),
        ("The courier collected my return {WHEN} but I haven't heard anything about a refund for [O:my order].", "refund", ""),
        ("I'd like to send back [P:the |what I ordered] for a refund. {RR}", "return", "s"),
        ("Can I return [P:the |the item] from [O:my order]? {RR}", "return", ""),
        ("I'd like a refund for [P:the |the item] in [O:my order]. {RR}", "return", ""),
        ("My refund for [P:the |the item] from [O:my order] still hasn't come through.", "refund", ""),
    ],
    "damaged_item": [
        ("My [P:|order] arrived today and {DMG}.", "damaged", "s"),
        ("[O:my order] came damaged: {DMG}.", "damaged", ""),
        ("Just unboxed [P:the |my package] and {DMG}. What do I do?", "damaged", "s"),
        ("The box was crushed and [P:the |the item] inside {IS} broken.", "damaged", "s"),
        ("The [P:|item] from [O:my order] {IS} defective, {DMG}.", "defective", ""),
        ("Received [O:my order] but {DMG}. Can I get a replacement?", "damaged", ""),
        ("my [P:|item] {IS} broken right out of the box", "damaged", "s"),
        ("I'm disappointed. [P:The |The product] I got {DAY} {IS} faulty: {DMG}.", "defective", "s"),
        ("[O:my order] arrived but {DMG}. I can send photos.", "damaged", ""),
        ("The [P:|thing] you sent {IS} faulty, {DMG}.", "defective", "s"),
        ("I opened [P:the |the parcel] this morning and {DMG}.", "damaged", "s"),
        ("[P:The |The item] arrived in terrible condition, {DMG}.", "damaged", "s"),
        ("Brand new [P:|item] and {DMG}. Not great.", "defective", "s"),
        ("[O:my order] arrived today and [P:the |the item] {IS} damaged: {DMG}.", "damaged", ""),
        ("Opened [O:my order] and found [P:the |the item] broken, {DMG}.", "damaged", ""),
    ],
    "billing_issue": [
        ("I was charged twice for [O:my order].", "double", ""),
        ("My card was charged {AMT} but the total for [O:my order] was {AMT2}.", "wrong", ""),
        ("There's a charge from your store on my statement that I don't recognise.", "unknown", ""),
        ("Why was I billed twice for [P:the |the same order]?", "double", "s"),
        ("[P:The |The item] {WAS} listed at {AMT2} but I was charged {AMT}.", "wrong", "s"),
        ("I see two identical charges of {AMT} for [O:one order].", "double", ""),
        ("you charged me {AMT} for [O:my order] but the discount code wasn't applied", "wrong", ""),
        ("Unknown charge of {AMT} on my card from you guys. What is this for?", "unknown", ""),
        ("I got charged for shipping on [O:my order] even though checkout said free shipping.", "wrong", ""),
        ("Charged twice for [O:one order]!!", "double", ""),
        ("My bank shows a charge of {AMT} from your shop that I didn't make.", "unknown", ""),
        ("The invoice for [O:my order] shows a higher amount than I paid at checkout.", "wrong", ""),
        ("I paid for [P:the |my order] once but the money came out of my account twice.", "double", "s"),
        ("I bought [P:the |one item] in [O:an order] {WHEN} and got charged twice.", "double", ""),
        ("I was charged {AMT} for [P:the |the item] on [O:my order], but the price at checkout was {AMT2}.", "wrong", ""),
    ],
    "payment_update": [
        ("I need to change the card on my account.", "card", "s"),
        ("Can I update the payment method for [O:my order]? My old card expired.", "card", ""),
        ("How do I switch to paying with {PAY}?", "method", ""),
        ("I'd like to pay for [P:the |my order] with {PAY} instead.", "method", "s"),
        ("My card on file expired, where do I add a new one?", "card", ""),
        ("Please remove my old Mastercard and use {PAY} from now on.", "method", ""),
        ("The payment for [O:my order] didn't go through. Can I use a different card?", "card", ""),
        ("can i change the payment method on [O:my order] to {PAY}", "method", ""),
        ("I got a new bank card. How do I update it in my account?", "card", ""),
        ("Is it possible to change the card used for [O:my order]?", "card", ""),
        ("I want to use {PAY} for [P:the |my order] instead of my credit card.", "method", "s"),
        ("Can I pay for [P:the |the items] in [O:my order] with {PAY} instead?", "method", ""),
        ("How do I update my billing card details? The old one was cancelled.", "card", ""),
    ],
    "account_access": [
        ("I can't log in to my account.", "login", ""),
        ("I forgot my password and the reset email never arrives.", "reset", ""),
        ("My account is locked after too many login attempts.", "locked", ""),
        ("I'm not getting the 2FA code by text, so I can't sign in.", "2fa", ""),
        ("It keeps saying 'incorrect password' even though I just reset it.", "reset", ""),
        ("I can't sign in to see [O:my orders]. It says my email isn't registered.", "login", ""),
        ("I got a new phone and now I can't get past the two-factor step.", "2fa", ""),
        ("locked out of my account again", "locked", ""),
        ("The password reset link says it has expired every time I click it.", "reset", ""),
        ("Can you help me get back into my account? I can't log in to look at [O:my orders].", "login", ""),
        ("I tried to reorder [P:the |something] but your site won't let me log in.", "login", "s"),
        ("The login page just reloads when I enter my details.", "login", ""),
        ("I no longer have access to the email on my account. How can I log in?", "login", ""),
        ("I wanted to leave a review for [P:the |my purchase] but I'm locked out of my account.", "locked", "s"),
    ],
    "change_address": [
        ("I need to change the shipping address on [O:my order]. The new address is {ADDR}.", "addr", "a"),
        ("Can you send [O:my order] to {ADDR} instead?", "addr", "a"),
        ("I've just moved. Please update the delivery address for [P:the |my order] to {ADDR}.", "addr", "sa"),
        ("Wrong address on [O:my order]! It should go to {ADDR}.", "addr", "a"),
        ("Is it possible to change where [O:my order] is being delivered? I'll be at {ADDR} that week.", "addr", "a"),
        ("I typed the wrong street number for [P:the |my delivery]. Can I fix it?", "addr", "s"),
        ("Please ship [P:the |my order] to my work address instead: {ADDR}.", "addr", "sa"),
        ("change delivery address for [O:my order] pls", "addr", ""),
        ("How can I update the address on an order that hasn't shipped yet?", "addr", "s"),
        ("My [P:|order] {IS} going to my old flat. Can you redirect it to {ADDR}?", "addr", "sa"),
        ("I made a typo in the postcode for [O:my order]. The correct one is {PC}.", "addr", "a"),
        ("Could you change the delivery address on [O:my order]? I won't be living there anymore.", "addr", ""),
        ("Can the [P:|parcel] in [O:my order] go to {ADDR} instead?", "addr", "a"),
    ],
    "product_info": [
        ("{DOES} the [P:|] {Q}?", "spec", ""),
        ("Quick question before I buy: {DOES_L} the [P:|] {Q}?", "spec", ""),
        ("{IS_C} the [P:|] in stock right now?", "stock", ""),
        ("I'm thinking about getting the [P:|]. {DOES_IT} {Q}?", "spec", ""),
        ("Can you tell me if the [P:|] {Q_3}?", "spec", ""),
        ("What's the warranty on the [P:|]?", "spec", ""),
        ("Before I order the [P:|], {DOES_IT_L} {Q}?", "spec", ""),
        ("Will the [P:|] be back in stock soon?", "stock", ""),
        ("{DOES_L} the [P:|] {Q}", "spec", ""),
        ("What are the dimensions of the [P:|]?", "spec", ""),
        ("Hoping to buy the [P:|] as a present. {DOES_IT} {Q}?", "spec", ""),
        ("{IS_C} the [P:|] still available, and {DOES_IT_L} {Q}?", "stock", ""),
        ("Looking at the [P:|] on your site. Can anyone confirm whether {IT} {Q_3}?", "spec", ""),
    ],
    "talk_to_human": [
        ("I want to talk to a real person, not a bot.", "human", "s"),
        ("Can I speak to a human agent about [O:my order]?", "human", ""),
        ("Please connect me with someone from customer service.", "human", "s"),
        ("Is there a phone number I can call to talk to an actual person?", "human", ""),
        ("agent please", "human", ""),
        ("The chatbot keeps going in circles. I need a human.", "human", ""),
        ("I'd rather discuss [O:my order] with a person. Can you transfer me?", "human", ""),
        ("I have a complicated question about [P:the |my order] and would like to speak with a staff member.", "human", "s"),
        ("Stop sending me automated answers and get me a real agent.", "human", ""),
        ("Can someone from your team call me back about [O:my order]?", "human", ""),
        ("Representative.", "human", ""),
        ("I'd like to speak to a supervisor about [P:the |my order], please.", "human", "s"),
        ("Is anyone actually there? I need a live agent to help with [P:the |my order].", "human", "s"),
        ("talk to human", "human", ""),
        ("Can you put me through to a member of staff? This is about [O:my order].", "human", ""),
        ("I need a real person to help with [O:my order]. It involves [P:the |more than one item].", "human", ""),
    ],
}

# Context sentences; an optional set of sub-issues restricts where a sentence may be used.
EXTRAS = {
    "order_status": [("I need it for a birthday this weekend.", None),
                     ("The tracking page hasn't changed in days.", None),
                     ("The website said 3-5 business days.", None),
                     ("I've already checked with my neighbours.", {"delivered", "where", "late"}),
                     ("I paid for express shipping.", None),
                     ("I haven't had any email from the courier.", None)],
    "cancel_order": [("I haven't received a shipping email yet.", None),
                     ("I'd rather not deal with a return later.", None),
                     ("Sorry for the hassle.", None), ("It was an impulse buy, honestly.", None)],
    "return_refund": [("It's still in the original packaging.", {"return"}), ("I haven't used it.", {"return"}),
                      ("I still have the receipt.", {"return"}), ("All the tags are still on.", {"return"}),
                      ("I bought it within the last month.", {"return"}),
                      ("I kept the drop-off receipt.", {"refund"}),
                      ("It's been longer than the 14 days mentioned on your site.", {"refund"}),
                      ("I haven't had any email about it.", {"refund"})],
    "damaged_item": [("The outer box looked fine.", None), ("I can send photos.", None),
                     ("It was meant to be a gift.", None), ("I've only had it since yesterday.", None),
                     ("The packaging was soaked when it arrived.", None)],
    "billing_issue": [("My bank app shows both transactions.", {"double"}), ("I only placed one order.", {"double"}),
                      ("Please look into this.", None),
                      ("I've got a screenshot of my statement if you need it.", None),
                      ("I checked my email receipts and the amounts don't match.", {"wrong"}),
                      ("I don't remember buying anything recently.", {"unknown"})],
    "payment_update": [("My old card was cancelled after I lost it.", {"card"}),
                       ("The bank sent me a replacement card.", {"card"}),
                       ("I'd prefer not to use my credit card.", {"method"}),
                       ("It's easier for me to keep everything in one place.", {"method"}),
                       ("I can't find the option in my account settings.", None)],
    "account_access": [("I've tried resetting it twice.", {"login", "reset", "locked"}),
                       ("I've cleared my cookies and tried another browser.", {"login", "reset"}),
                       ("I'm using the same email as always.", {"login", "reset", "locked"}),
                       ("It worked fine last month.", None),
                       ("I've tried resending the code several times.", {"2fa"})],
    "change_address": [("I don't think it has shipped yet.", None),
                       ("I forgot to update my address before ordering.", None),
                       ("Sorry for the trouble!", None),
                       ("Nobody will be at the old address to receive it.", None)],
    "product_info": [("I want to buy it as a gift.", None), ("I'm comparing a few options.", None),
                     ("Thanks in advance!", None), ("The product page doesn't say.", None)],
    "talk_to_human": [("I've already read the help centre articles.", None),
                      ("This is the third time I'm writing.", None),
                      ("The automated replies aren't helping.", None),
                      ("It's easier to explain to a person.", None)],
}
ANGRY_EXTRAS = ["This is ridiculous.", "Honestly really frustrated right now.", "Not impressed.",
                "I expected better from you.", "Very disappointing service."]
OPENERS = ["Hi,", "Hello,", "Hey,", "Hi there,", "Good morning,", "Good afternoon.", "Dear support team,",
           "Hello support,", "Hi team,", "Hey there.", "Hello!", "Hiya,"]
ANGRY_OPENERS = ["Seriously?", "Ugh.", "Not happy.", "Hello??", "OK, this is getting silly."]
CLOSERS = ["Thanks.", "Thank you!", "Thanks in advance.", "Appreciate it.", "Please help.", "Kind regards.",
           "Thanks for your help.", "Cheers.", "Many thanks."]
ANGRY_CLOSERS = ["Sort it out please.", "Waiting for an answer.", "Fix this.", "I want this resolved today."]
NAMES = ["Maria", "Tom", "Priya", "Jamie", "Ahmed", "Sofia", "Liam", "Chen", "Olivia", "Mateo", "Grace", "Noah",
         "Aisha", "Ben", "Hannah", "Kofi", "Elena", "Sam", "Yuki", "Daniel"]
SIGNOFFS = ["Thanks, {name}", "Cheers, {name}", "Best regards, {name}", "- {name}", "Thanks!\n{name}",
            "Kind regards,\n{name}"]

FIELDS = {
    "WHEN": ["last week", "ten days ago", "two weeks ago", "last Tuesday", "over a week ago", "on Monday",
             "nearly three weeks ago", "at the start of the month"],
    "WHEN_SHORT": ["an hour ago", "this morning", "last night", "yesterday", "about 20 minutes ago"],
    "DAY": ["yesterday", "on Friday", "last Thursday", "two days ago", "on Monday"],
    "DAY2": ["Saturday", "the weekend", "Friday", "next Wednesday"],
    "N": ["3", "four", "5", "several", "6"],
    "PAY": ["PayPal", "Apple Pay", "my new debit card", "a different Visa card", "Google Pay", "my business card"],
    "ADDR": ["14 Harbour Street, Leeds", "Flat 3, 22 Mill Lane, Bristol", "7 Rosewood Avenue, Cork",
             "88 Kingsway, Manchester", "5 Orchard Close, York", "Apt 4B, 310 Pine Street, Portland",
             "19 Quay Road, Galway", "42 Station Road, Reading", "Unit 9, Canal Wharf, Birmingham",
             "63 Maple Drive, Toronto"],
    "PC": ["LS6 2QT", "BS1 5AH", "M14 6HX", "EH3 9DR", "YO1 7PL", "CF10 1AB"],
}

# (amount charged, amount expected/listed)
AMOUNT_PAIRS = [("$89.99", "$69.99"), ("$124.50", "$99.50"), ("$56.00", "$45.00"), ("£42.99", "£32.99"),
                ("€79.90", "€59.90"), ("$210.00", "$180.00"), ("£18.50", "£12.50"), ("$37.98", "$18.99"),
                ("€64.00", "€49.00")]
ORDER_NP = ["order #{n}", "order #{n}", "my order #{n}", "order no. {n}", "my order no. {n}", "order number {n}",
            "ord {n}", "order {n}", "order ID {n}", "my order (#{n})", "order nr. {n}", "#{n}", "ord#{n}",
            "Order No. {n}", "order # {n}"]
ORDER_SUFFIX = ["Order #{n}.", "Order number: {n}", "(order no. {n})", "My order is #{n}.", "It's ord {n}.",
                "Ref: order {n}", "Order ID {n}, if that helps.", "Order #{n}", "The order number is {n}."]

TYPOS = {"received": "recieved", "receive": "recieve", "address": "adress", "please": "pls", "cancel": "cancle",
         "password": "pasword", "account": "acount", "because": "becuase", "definitely": "definately",
         "waiting": "waitng", "already": "allready", "thanks": "thx", "delivered": "deliverd", "really": "realy",
         "you": "u", "your": "ur", "know": "kno", "anymore": "any more", "arrived": "arived",
         "still": "stil", "charged": "chargd", "something": "somthing", "tracking": "traking"}
APOS = {"can't": "cant", "it's": "its", "don't": "dont", "I'm": "im", "didn't": "didnt", "won't": "wont",
        "hasn't": "hasnt", "haven't": "havent", "what's": "whats", "doesn't": "doesnt", "I've": "ive"}

PLURAL_NOUNS = {"headphones", "earbuds", "shoes", "boots", "leggings", "knives", "tiles"}
SLOT_RE = re.compile(r"\[(O|P):([^\]]*)\]")
FIELD_RE = re.compile(r"\{([A-Z0-9_]+)\}")

# ---------------------------------------------------------------------------
# Replies: ack (by intent/sub) + next step (by whether we know the order id)
# + optional closing. [R:default] = reference to the order/product.
# ---------------------------------------------------------------------------
ACKS = {
    "order_status": {
        "where": ["I'm sorry [R:your order] {hasnt} arrived yet.",
                  "Thanks for getting in touch about [R:your order], and sorry it hasn't turned up yet.",
                  "I understand you're still waiting for [R:your order], and I'm sorry for the wait."],
        "when": ["Thanks for asking about the delivery date for [R:your order].",
                 "Happy to check on [R:your order] for you.",
                 "Thanks for reaching out about the arrival date for [R:your order]."],
        "tracking": ["Sorry the tracking for [R:your order] isn't giving you a clear answer.",
                     "Thanks for flagging that the tracking on [R:your order] hasn't moved.",
                     "I can see why the tracking for [R:your order] is confusing, and I'm sorry about that."],
        "late": ["I'm sorry [R:your order] didn't arrive when expected.",
                 "Apologies that [R:your order] {is} running late."],
        "delivered": ["I'm sorry to hear [R:your order] {shows} as delivered but never reached you.",
                      "Thanks for letting us know [R:your order] {is} marked as delivered but {isnt} with you."],
        "shipped": ["Thanks for checking whether [R:your order] {has} shipped.",
                    "Happy to look into whether [R:your order] {is} on the way."],
    },
    "cancel_order": {
        "cancel": ["Thanks for letting us know you'd like to cancel [R:your order].",
                   "No problem, I can help with cancelling [R:your order].",
                   "Understood, you'd like to cancel [R:your order].",
                   "Thanks for reaching out about cancelling [R:your order]."],
    },
    "return_refund": {
        "return": ["Thanks for letting us know you'd like to return [R:your item].",
                   "Sorry [R:the item] {wasnt} right for you.",
                   "No problem, I can help you return [R:your item].",
                   "Thanks for getting in touch about returning [R:your item]."],
        "refund": ["Sorry you're still waiting on the refund for [R:your return].",
                   "Thanks for checking in about the refund for [R:your return].",
                   "I understand you'd like an update on the refund for [R:your return]."],
    },
    "damaged_item": {
        "damaged": ["I'm so sorry [R:your item] arrived damaged.",
                    "That's not the condition [R:your item] should have arrived in, and I'm sorry.",
                    "Sorry to hear [R:your item] {was} damaged on arrival."],
        "defective": ["Sorry to hear there's a problem with [R:your item].",
                      "I'm sorry [R:your item] turned out to be faulty.",
                      "Thanks for letting us know about the fault with [R:your item], and sorry for the trouble."],
    },
    "billing_issue": {
        "double": ["I'm sorry to see you were charged twice for [R:your order].",
                   "Thanks for flagging the duplicate charge on [R:your order].",
                   "Sorry about the double charge for [R:your order]."],
        "wrong": ["Thanks for letting us know the amount charged for [R:your order] doesn't look right.",
                  "Sorry about the mismatch in what you were charged for [R:your order].",
                  "I understand the charge for [R:your order] isn't what you expected."],
        "unknown": ["Thanks for letting us know about the charge you don't recognise.",
                    "I understand an unfamiliar charge is worrying, and I'm glad you reached out.",
                    "Sorry for the confusion about that charge on your statement."],
    },
    "payment_update": {
        "card": ["Thanks for letting us know you need to update the card for [R:your account].",
                 "Happy to help you change the card on [R:your account].",
                 "No problem, let's get the card details for [R:your account] updated."],
        "method": ["Thanks for letting us know you'd like to change the payment method for [R:your account].",
                   "Happy to help you switch how you pay for [R:your orders].",
                   "No problem, I can help with changing the payment method on [R:your account]."],
    },
    "account_access": {
        "login": ["Sorry you're having trouble logging in to [R:your account].",
                  "Thanks for letting us know about the login problem with [R:your account].",
                  "I'm sorry you can't get into [R:your account] right now."],
        "reset": ["Sorry the password reset isn't working for [R:your account].",
                  "I'm sorry the reset process is giving you trouble with [R:your account]."],
        "locked": ["I'm sorry you've been locked out of [R:your account].",
                   "Sorry to hear [R:your account] is locked."],
        "2fa": ["Sorry the verification code isn't coming through for [R:your account].",
                "I'm sorry the two-factor step is blocking you from [R:your account]."],
    },
    "change_address": {
        "addr": ["Thanks for letting us know about the address change for [R:your order].",
                 "Happy to help update the delivery address for [R:your order].",
                 "No problem, I understand [R:your order] {needs} to go to a different address.",
                 "Thanks for getting in touch about where [R:your order] should be delivered."],
    },
    "product_info": {
        "spec": ["Thanks for your interest in [R:the product]!", "Great question about [R:the product].",
                 "Thanks for asking about [R:the product] before ordering."],
        "stock": ["Thanks for checking on stock for [R:the product].", "Thanks for your interest in [R:the product]!",
                  "Happy to check availability of [R:the product] for you."],
    },
    "talk_to_human": {
        "human": ["Of course, I understand you'd like to speak with a person about [R:your request].",
                  "Thanks for your message, and I hear you'd like a member of our team to help with [R:this].",
                  "I'm sorry the automated replies haven't helped with [R:your request].",
                  "Absolutely, let's get you to a person for [R:your request]."],
    },
}
# R fallbacks that read badly when an explicit order/product is known get replaced by a ref.
# Product-only reference style per intent.
PROD_REF = {
    "order_status": ["your {p}", "the {p} you ordered"],
    "cancel_order": ["your {p} order", "the {p} order"],
    "return_refund": ["the {p}", "your {p}"],
    "damaged_item": ["your {p}", "the {p}"],
    "billing_issue": ["your {p} order", "the {p} purchase"],
    "payment_update": ["your {p} order"],
    "account_access": ["your account", "your account"],  # product is mentioned in a follow-up sentence
    "change_address": ["your {p} order", "the {p} delivery"],
    "product_info": ["the {p}"],
    "talk_to_human": ["your {p} order", "your question about the {p}"],
}
BOTH_REF = ["the {p} on order #{n}", "order #{n} (the {p})", "your {p} order (#{n})"]
ORDER_REF = ["order #{n}", "order #{n}"]

NEXT = {
    "order_status": {
        True: ["I'm checking the latest tracking information with the carrier now and will update you here.",
               "Let me look into where the parcel is right now, and I'll get back to you in this thread.",
               "I'll check its current status with our shipping team and share what I find.",
               "I'm pulling up the shipment details now so I can tell you where it is."],
        False: ["Could you send me your order number so I can look up the tracking details?",
                "If you share your order number, I'll check where the parcel is.",
                "Please reply with your order number or the email used at checkout, and I'll look into it."],
    },
    "cancel_order": {
        True: ["I'm checking whether it has already left our warehouse; if it hasn't, I'll cancel it and confirm by email.",
               "Let me check its status first, and if it hasn't shipped, I'll go ahead with the cancellation and let you know.",
               "I'll see whether it can still be stopped before dispatch and update you here."],
        False: ["Could you send me the order number so I can check whether it can still be cancelled?",
                "Please share your order number and I'll check if it's still possible to cancel.",
                "If you reply with the order number, I'll check whether it has shipped yet."],
    },
    "return_refund": {
        True: ["I'm checking the return options for this order and will send you the next steps here.",
               "I'll check that it's within the return window and then send you the return instructions.",
               "Let me look up the order details so I can walk you through the next steps."],
        False: ["Could you share your order number so I can check the return options?",
                "If you send me your order number, I'll check the return window and send you the instructions.",
                "Please reply with your order number and I'll look into the next steps."],
    },
    "damaged_item": {
        True: ["Could you send a couple of photos of the damage and the packaging so we can sort out the next steps?",
               "Please reply with a photo of the damage, and I'll look into the options for you.",
               "If you can share a few photos of the item and the box, I'll take it from there."],
        False: ["Could you send your order number along with a photo of the damage so I can look into the next steps?",
                "Please reply with your order number and a couple of photos of the damage, and I'll look into it.",
                "If you share the order number and a photo or two of the damage, I can check the options for you."],
    },
    "billing_issue": {
        True: ["I'm reviewing the payment records for this order now and will update you here with what I find.",
               "Let me check the transactions linked to this order so we can work out what happened.",
               "I'm looking into the charges on this order now and will get back to you here."],
        False: ["Could you share your order number and the date of the charge so I can look into it?",
                "Please send me the date and amount of the charge as it appears on your statement so I can match it to an order.",
                "If you reply with the order number or the email used at checkout, I'll check the payment records."],
    },
    "payment_update": {
        True: ["For security we can't take card details in chat, but I'll check which payment options are still available for this order.",
               "Let me check whether the payment method can still be changed on this order, and I'll let you know here.",
               "I'm looking at the order now to see what can be updated, and I'll follow up here."],
        False: ["You can update your saved cards in the payment settings of your account; let me know if the option doesn't appear for you.",
                "For security we can't take card details in chat, but you can add a new payment method in your account settings.",
                "Could you let me know which payment method you'd like to use so I can check the options for you?"],
    },
    "account_access": {
        True: ["Could you confirm the email address on your account so I can check what's blocking the sign-in?",
               "Please try the 'Forgot password' link once more, and if the email doesn't arrive, reply with your account email so I can check it.",
               "If you let me know the email address you registered with, I'll look into your account status."],
        False: ["Could you confirm the email address on your account so I can check what's blocking the sign-in?",
                "Please check your spam folder for our emails, and if nothing is there, reply with your account email so I can look into it.",
                "If you let me know the email address you registered with, I'll look into your account status."],
    },
    "change_address": {
        True: ["Could you reply with the full new address, including the postcode? I'll then check whether the parcel can still be redirected.",
               "Please send me the complete new address and I'll check whether the order can still be updated."],
        False: ["Please send me the order number and the full new address, and I'll check whether it can still be updated.",
                "Could you share your order number and the complete new address so I can look into it?"],
    },
    "product_info": {
        True: ["Let me check the product specifications and get back to you with an accurate answer.",
               "I'm confirming the details with our product team so I can give you a reliable answer.",
               "I'll look up the details and reply here as soon as I have them."],
        False: [],
    },
    "talk_to_human": {
        True: ["I'm passing this conversation to one of our support agents, who will reply here.",
               "I've asked a member of our support team to take over, and they'll pick up this conversation.",
               "I'm transferring you to a team member; to save time, could you share any details they should know?"],
        False: [],
    },
}
NEXT_SUB = {
    ("billing_issue", "double", True): [
        "Sometimes a second charge is only a temporary hold, but I'll check the payment records for this order to confirm."],
    ("order_status", "delivered", True): [
        "I'm opening a check with the carrier now; in the meantime, could you look around any safe places or ask your neighbours?"],
    ("account_access", "2fa", True): [
        "Could you confirm the email on the account so I can help you with the two-factor setup?"],
    ("account_access", "2fa", False): [
        "Could you confirm the email on the account so I can help you with the two-factor setup?"],
}
NEXT_REPLACE = {
    ("product_info", "stock", True): [
        "Let me check the current stock levels and get back to you here.",
        "I'm checking availability with our warehouse team and will update you in this thread.",
        "I'll look into the latest stock information and let you know what I find."],
    ("billing_issue", "unknown", False): [
        "Could you send me the date and amount exactly as they appear on your statement so I can trace the charge?",
        "Please reply with the date and amount of the charge and the email address you use with us, so I can check our records.",
        "If you share the date of the charge and how it's described on your statement, I'll look into where it came from."],
    ("return_refund", "refund", True): [
        "I'm checking with our returns team whether the parcel has been received and processed, and I'll update you here.",
        "Let me look up the return on this order and see where the refund is in the process.",
        "I'll check the status of the return with our warehouse team and get back to you in this thread."],
    ("return_refund", "refund", False): [
        "Could you send the order number or the return tracking number so I can check where the refund is?",
        "If you reply with your order number, I'll check whether the return has been received and processed.",
        "Please share the order number and I'll look up the status of your return."],
}
NEXT_ADDR_KNOWN = {
    True: ["I'm checking whether it has left the warehouse yet, and if not, I'll update it to {ADDR}.",
           "Let me check whether the address can still be changed to {ADDR} before it ships, and I'll confirm here."],
    False: ["Could you send me your order number so I can check whether it can still go to {ADDR}?",
            "If you share the order number, I'll check whether the delivery can still be changed to {ADDR}."],
}
CLOSE_NEG = ["Thanks for your patience.", "Sorry again for the trouble.", "Thanks for bearing with us."]
CLOSE_NEU = ["Thanks for reaching out.", "Thanks for getting in touch.", "Thanks for your patience."]
CLOSE_PI = ["Happy to help with anything else you'd like to know.", "Thanks for your patience!"]
ANGRY_ACK = ["I'm sorry for the frustration this has caused.", "I completely understand your frustration.",
             "I'm sorry this has been such a hassle."]
NEUTRAL_INTENTS = {"change_address", "payment_update", "cancel_order", "talk_to_human"}

FORBIDDEN_IN_REPLY = ["guarantee", "tomorrow", "within 24", "will be refunded", "will arrive", "full refund",
                      "refund you", "issue a refund", "today"]


def norm(s: str) -> str:
    return re.sub(r"\s+", " ", s.lower()).strip()


def loose(s: str) -> str:
    """Stricter key used only for avoiding collisions: also ignores punctuation."""
    return re.sub(r"[^\w]+", " ", s.lower()).strip()


class Msg:
    """One generated message with its ground-truth variables."""

    def __init__(self, intent, text, order_id, product, product_display, sub, fields, tone, name):
        self.intent, self.text, self.order_id, self.product = intent, text, order_id, product
        self.product_display, self.sub, self.fields, self.tone, self.name = product_display, sub, fields, tone, name


def fill_fields(rng, text, cat, fields):
    def repl(m):
        key = m.group(1)
        if key in fields:
            return fields[key]
        if key == "DMG":
            val = rng.choice(CATEGORY[cat]["dmg"] if cat else GENERIC_DMG)
        elif key in ("Q", "Q_3"):
            q = rng.choice(CATEGORY[cat]["q"])
            fields["Q"] = q
            val = q if (key == "Q" or fields.get("_plural")) else third_person(q)
        elif key == "RR":
            val = rng.choice(CATEGORY[cat]["rr"] if cat else GENERIC_RR)
        elif key in ("AMT", "AMT2"):
            charged, listed = rng.choice(AMOUNT_PAIRS)
            fields["AMT"], fields["AMT2"] = charged, listed
            val = fields[key]
        else:
            val = rng.choice(FIELDS[key])
        fields[key] = val
        return val
    return FIELD_RE.sub(repl, text)


def third_person(vp: str) -> str:
    verb, _, rest = vp.partition(" ")
    irregular = {"have": "has", "do": "does", "go": "goes"}
    if verb in irregular:
        v = irregular[verb]
    elif verb.endswith(("s", "sh", "ch")):
        v = verb + "es"
    else:
        v = verb + "s"
    return (v + " " + rest).strip()


def apply_noise(rng, text, typos, no_apos):
    if no_apos:
        for a, b in APOS.items():
            text = re.sub(rf"(?<![\w']){re.escape(a)}(?![\w'])", b, text)
    if typos:
        def repl(m):
            w = m.group(0)
            t = TYPOS.get(w.lower())
            if t and rng.random() < 0.45:
                return t
            return w
        text = re.sub(r"[A-Za-z]+", repl, text)
    return text


def make_message(rng, intent, has_order, has_product, order_id):
    cores = CORES[intent]
    if has_product:
        cand = [c for c in cores if "[P:" in c[0]]
    else:
        cand = list(cores)
    if has_order:
        with_slot = [c for c in cand if "[O:" in c[0]]
        with_sfx = [c for c in cand if "s" in c[2] and "[O:" not in c[0]]
        cand = with_slot + with_sfx
    if not cand:
        raise RuntimeError(f"no template for {intent} order={has_order} product={has_product}")
    tmpl, sub, flags = rng.choice(cand)

    prod = rng.choice(PRODUCTS) if has_product else None
    cat = prod[2] if prod else None
    prod_display = None
    if prod:
        prod_display = prod[0] if rng.random() < 0.6 else prod[1]

    plural = bool(prod_display) and prod_display.split()[-1] in PLURAL_NOUNS
    fields = dict(_plural="1" if plural else "",
                  IS="are" if plural else "is", IS_C="Are" if plural else "Is", WAS="were" if plural else "was",
                  DOES="Do" if plural else "Does", DOES_L="do" if plural else "does",
                  DOES_IT="Do they" if plural else "Does it", DOES_IT_L="do they" if plural else "does it",
                  IT="they" if plural else "it", HASNT="haven't" if plural else "hasn't")
    core = fill_fields(rng, tmpl, cat, fields)
    order_np = rng.choice(ORDER_NP).format(n=order_id) if has_order else None

    r0 = rng.random()
    style = "short" if r0 < 0.25 else ("medium" if r0 < 0.7 else "long")
    tone = "neutral"
    if intent != "product_info" and rng.random() < 0.2:
        tone = "angry"
    lower = style == "short" and rng.random() < 0.45 or (style != "short" and rng.random() < 0.08)
    typos = rng.random() < (0.35 if style == "short" else 0.15)
    no_apos = rng.random() < (0.4 if (lower or typos) else 0.05)

    # split core into protected segments
    segs = []  # list of (kind, text); kind in {"t","O","P"}
    pos = 0
    for m in SLOT_RE.finditer(core):
        segs.append(("t", core[pos:m.start()]))
        kind, arg = m.group(1), m.group(2)
        if kind == "O":
            segs.append(("O", order_np) if has_order else ("t", arg))
        else:
            prefix, _, fb = arg.partition("|") if "|" in arg else ("", "", arg)
            if has_product:
                segs.append(("t", prefix))
                segs.append(("P", prod_display))
            else:
                segs.append(("t", fb))
        pos = m.end()
    segs.append(("t", core[pos:]))
    used_o = any(k == "O" for k, _ in segs)
    if style != "short" and not core.rstrip().endswith((".", "!", "?")):
        first = core.split()[0].lower().strip("{}")
        q = first in {"does", "does_l", "do", "can", "is", "when", "how", "what", "where", "will", "has", "could"}
        segs.append(("t", "?" if q else "."))

    # sentence-level assembly
    pieces = []
    name = None
    if style != "short" and rng.random() < (0.75 if style == "long" else 0.45):
        op = rng.choice(ANGRY_OPENERS if tone == "angry" and rng.random() < 0.5 else OPENERS)
        pieces.append([("t", op)])
    pieces.append(segs)
    if has_order and not used_o:
        sfx = rng.choice(ORDER_SUFFIX).format(n=order_id)
        pieces.append([("O", sfx)])
    pool = [x for x, subs in EXTRAS[intent] if subs is None or sub in subs]
    shown_angry = False
    if style == "long":
        pieces.append([("t", rng.choice(pool))])
        if rng.random() < 0.4:
            pool2 = ANGRY_EXTRAS if tone == "angry" else pool
            x = rng.choice(pool2)
            if x != pieces[-1][0][1]:
                pieces.append([("t", x)])
                shown_angry |= x in ANGRY_EXTRAS
    elif style == "medium" and rng.random() < 0.5:
        x = rng.choice(ANGRY_EXTRAS if tone == "angry" else pool)
        pieces.append([("t", x)])
        shown_angry |= x in ANGRY_EXTRAS
    elif tone == "angry" and style == "short":
        pieces.append([("t", rng.choice(ANGRY_EXTRAS))])
        shown_angry = True
    if style != "short" and rng.random() < 0.6:
        if rng.random() < 0.35:
            name = rng.choice(NAMES)
            pieces.append([("t", rng.choice(SIGNOFFS).format(name=name))])
        else:
            cl = rng.choice(ANGRY_CLOSERS if tone == "angry" else CLOSERS)
            pieces.append([("t", cl)])
            shown_angry |= cl in ANGRY_CLOSERS
    shown_angry |= any(p[0][1] in ANGRY_OPENERS for p in pieces)
    if "!!" in core:
        shown_angry = True
    tone = "angry" if shown_angry else "neutral"

    # render
    out_parts = []
    product_written = prod_display.lower() if (prod_display and lower) else prod_display
    sep = "\n" if (style == "long" and rng.random() < 0.3) else " "
    for i, piece in enumerate(pieces):
        s = ""
        for kind, txt in piece:
            if kind == "t":
                t = apply_noise(rng, txt, typos, no_apos)
                s += t.lower() if lower else t
            elif kind == "O":
                s += txt.lower() if lower else txt
            else:
                s += product_written
        s = s.strip()
        casual = piece is segs and tmpl[0].islower()  # hand-written all-lowercase templates stay that way
        if not lower and not casual and s and s[0].islower():
            s = s[0].upper() + s[1:]
        if (piece is segs and out_parts and out_parts[-1].endswith(",") and sep == " " and piece[0][0] == "t"
                and piece[0][1] and not re.match(r"I\b|I'", s) and rng.random() < 0.5):
            s = s[0].lower() + s[1:]  # "Hi, can you ..." rather than "Hi, Can you ..."
        if piece is segs and i < len(pieces) - 1 and not s.endswith((".", "!", "?")):
            q = s.split()[0].lower() in {"does", "do", "can", "is", "are", "when", "how", "what", "where", "will"}
            s += "?" if q else "."
        if piece[0][0] == "O" and i < len(pieces) - 1 and sep == " " and not s.endswith((".", "!", "?", ")")):
            s += "."
        out_parts.append(s)
    text = sep.join(p for p in out_parts if p)
    if style == "short" and lower and rng.random() < 0.5:
        text = text.rstrip(".")
    return Msg(intent, text, order_id if has_order else None, product_written if has_product else None,
               prod_display, sub, fields, tone, name)


def render_ref(rng, intent, default, msg):
    """Return (reference text, whether its head noun is plural)."""
    n, p = msg.order_id, msg.product_display
    if intent == "account_access":
        return default, False
    plural_p = bool(p) and p.split()[-1] in PLURAL_NOUNS
    if n and p:
        t = rng.choice(BOTH_REF)
        return t.format(n=n, p=p), plural_p and t.startswith("the {p}")
    if n:
        return rng.choice(ORDER_REF).format(n=n), False
    if p:
        t = rng.choice(PROD_REF[intent])
        return t.format(p=p), plural_p and (t.endswith("{p}") or t.endswith("you ordered"))
    return default, False


AGREE = {"is": ("is", "are"), "isnt": ("isn't", "aren't"), "was": ("was", "were"), "wasnt": ("wasn't", "weren't"),
         "has": ("has", "have"), "hasnt": ("hasn't", "haven't"), "shows": ("shows", "show"),
         "needs": ("needs", "need")}


def make_reply(rng, msg: Msg) -> str:
    intent = msg.intent
    ack_t = rng.choice(ACKS[intent][msg.sub])
    m_r = re.search(r"\[R:([^\]]*)\]", ack_t)
    ref, plural = render_ref(rng, intent, m_r.group(1), msg) if m_r else ("", False)
    ack = re.sub(r"\[R:[^\]]*\]", lambda m: ref, ack_t)
    ack = re.sub(r"\{(\w+)\}", lambda m: AGREE[m.group(1)][1 if plural else 0], ack)
    sentences = []
    if msg.tone == "angry" and intent not in NEUTRAL_INTENTS and rng.random() < 0.7:
        angry = rng.choice(ANGRY_ACK)
        if angry[:8] == ack[:8]:
            angry = ANGRY_ACK[1]
        sentences.append(angry)
    sentences.append(ack)

    has_id = msg.order_id is not None
    if intent == "account_access" and (has_id or msg.product_display):
        if has_id and msg.product_display:
            what = f"order #{msg.order_id} (the {msg.product_display})"
        else:
            what = f"order #{msg.order_id}" if has_id else f"the {msg.product_display}"
        sentences.append(rng.choice([
            f"Once you're back in, you'll be able to see {what} again.",
            f"I'll make sure you can get back to {what} as soon as the login is sorted.",
        ]))
    if intent == "change_address" and "ADDR" in msg.fields:
        nxt = rng.choice(NEXT_ADDR_KNOWN[has_id]).replace("{ADDR}", msg.fields["ADDR"])
    elif intent == "change_address" and "PC" in msg.fields:
        nxt = rng.choice([
            f"I'll check whether the postcode can still be corrected to {msg.fields['PC']} before it ships, and confirm here.",
            f"Let me see whether the order can still be updated with the postcode {msg.fields['PC']}, and I'll let you know.",
        ])
    elif intent in ("product_info", "talk_to_human"):
        nxt = rng.choice(NEXT[intent][True])
    elif (intent, msg.sub, has_id) in NEXT_REPLACE:
        nxt = rng.choice(NEXT_REPLACE[(intent, msg.sub, has_id)])
    else:
        nxt = rng.choice(NEXT[intent][has_id] + NEXT_SUB.get((intent, msg.sub, has_id), []))
    if intent == "account_access" and len(sentences) >= 2 and nxt.count("?") + nxt.count(".") > 1:
        nxt = NEXT[intent][True][0]
    sentences.append(nxt)

    def count(ss):
        return sum(len(split_sentences(s)) for s in ss)

    if count(sentences) < 3 and msg.tone != "angry" and rng.random() < 0.45:
        pool = CLOSE_PI if intent == "product_info" else (CLOSE_NEU if intent in NEUTRAL_INTENTS else CLOSE_NEG)
        pool = [c for c in pool if c.lower().rstrip(".!")[-12:] not in " ".join(sentences).lower()]
        if pool:
            sentences.append(rng.choice(pool))
    if count(sentences) > 3 and sentences[0] in ANGRY_ACK:
        sentences.pop(0)
    assert count(sentences) <= 3, sentences
    text = " ".join(sentences)
    if rng.random() < 0.35:
        greet = f"Hi {msg.name}," if msg.name else rng.choice(["Hi there,", "Hello,", "Hi,"])
        first = text[0] if text.startswith(("I ", "I'")) else text[0].lower()
        text = f"{greet} {first}{text[1:]}"
    return text


def split_sentences(s: str):
    return [x for x in re.split(r"(?<=[.!?])\s+", s.strip()) if x]


def load_intents_texts(key=norm):
    texts = set()
    for path in AVOID_PATHS:
        if not path.exists():
            continue
        with path.open(encoding="utf-8") as f:
            for line in f:
                line = line.strip()
                if not line:
                    continue
                try:
                    obj = json.loads(line)
                except json.JSONDecodeError:
                    continue
                if isinstance(obj, dict) and isinstance(obj.get("text"), str):
                    texts.add(key(obj["text"]))
    return texts


def generate():
    rng = random.Random(SEED)
    forbidden = load_intents_texts(loose)
    seen = set()
    used_ids = set()
    rows = []

    def new_order_id():
        while True:
            k = rng.choice([5, 5, 6, 6, 7])
            n = str(rng.randint(10 ** (k - 1), 10 ** k - 1))
            if n not in used_ids:
                used_ids.add(n)
                return n

    for task in TASKS:
        for intent in LABELS:
            po, pp = PRESENCE[intent]
            k = PER_INTENT_PER_TASK
            n_o, n_p = round(k * po), round(k * pp)
            orders = [True] * n_o + [False] * (k - n_o)
            prods = [True] * n_p + [False] * (k - n_p)
            rng.shuffle(orders)
            rng.shuffle(prods)
            for has_o, has_p in zip(orders, prods):
                for _attempt in range(500):
                    oid = new_order_id() if has_o else None
                    msg = make_message(rng, intent, has_o, has_p, oid)
                    key = norm(msg.text)
                    if key in seen or loose(msg.text) in forbidden:
                        continue
                    break
                else:
                    raise RuntimeError("could not generate a unique message")
                seen.add(key)
                if task == "classify":
                    output = intent
                elif task == "extract":
                    output = json.dumps({"intent": intent, "order_id": msg.order_id, "product": msg.product},
                                        separators=(",", ":"), ensure_ascii=False)
                else:
                    output = make_reply(rng, msg)
                rows.append({"instruction": rng.choice(INSTRUCTIONS[task]), "input": msg.text,
                             "output": output, "task": task,
                             "_meta": (intent, msg.order_id, msg.product_display)})
    rng.shuffle(rows)
    return rows


def check(path: Path) -> dict:
    rows = [json.loads(l) for l in path.read_text(encoding="utf-8").splitlines()]
    raw = path.read_bytes()
    assert raw.endswith(b"\n") and not raw.endswith(b"\n\n"), "file must end with exactly one newline"
    assert 720 <= len(rows) <= 780, len(rows)
    tasks = Counter()
    intents = {t: Counter() for t in TASKS}
    seen = set()
    n_order = n_prod = 0
    for i, r in enumerate(rows):
        assert list(r.keys()) == ["instruction", "input", "output", "task"], (i, list(r.keys()))
        for k in ("instruction", "input", "output", "task"):
            assert isinstance(r[k], str) and r[k].strip(), (i, k)
        assert r["task"] in TASKS, (i, r["task"])
        tasks[r["task"]] += 1
        key = norm(r["input"])
        assert key not in seen, ("duplicate input", i, r["input"])
        seen.add(key)
        assert r["instruction"] in INSTRUCTIONS[r["task"]], (i, r["instruction"])
        if r["task"] == "classify":
            assert r["output"] in LABELS, (i, r["output"])
            intents["classify"][r["output"]] += 1
        elif r["task"] == "extract":
            obj = json.loads(r["output"])
            assert list(obj.keys()) == ["intent", "order_id", "product"], (i, obj)
            assert r["output"] == json.dumps(obj, separators=(",", ":"), ensure_ascii=False), (i, r["output"])
            assert obj["intent"] in LABELS, (i, obj)
            intents["extract"][obj["intent"]] += 1
            oid, prod = obj["order_id"], obj["product"]
            digit_runs = re.findall(r"\d+", r["input"])
            long_runs = [d for d in digit_runs if len(d) >= 5]
            if oid is None:
                assert not long_runs, ("unlabelled order-like number", i, r["input"])
            else:
                assert isinstance(oid, str) and oid.isdigit(), (i, oid)
                assert re.search(rf"(?<!\d){oid}(?!\d)", r["input"]), ("order_id not in input", i)
                assert long_runs == [oid], ("other long numbers in input", i, r["input"])
                n_order += 1
            if prod is not None:
                assert isinstance(prod, str) and prod and prod in r["input"], ("product not in input", i, prod)
                n_prod += 1
            else:
                catalogue = [w.lower() for p in PRODUCTS for w in (p[0], p[1])]
                assert not any(c in r["input"].lower() for c in catalogue), ("unlabelled product", i)
        else:
            out = r["output"]
            ns = len(split_sentences(out))
            assert 1 <= ns <= 3, ("reply sentence count", i, ns, out)
            low = out.lower()
            for bad in FORBIDDEN_IN_REPLY:
                assert bad not in low, ("promise in reply", i, bad, out)
    assert len(set(tasks.values())) == 1, tasks
    for t in ("classify", "extract"):
        assert set(intents[t]) == set(LABELS), intents[t]
    forbidden = load_intents_texts()
    clashes = [r["input"] for r in rows if norm(r["input"]) in forbidden]
    assert not clashes, ("collision with support_intents.jsonl", clashes[:5])
    return dict(n=len(rows), tasks=dict(tasks), classify=dict(intents["classify"]),
                extract=dict(intents["extract"]), extract_with_order=n_order, extract_with_product=n_prod,
                avoided_files=[str(p.relative_to(ROOT)) for p in AVOID_PATHS if p.exists()],
                avoided_texts=len(forbidden))


def check_reply_mentions(rows):
    """Replies must mention the order number / product when the message gives them."""
    for r in rows:
        if r["task"] != "reply":
            continue
        intent, oid, prod = r["_meta"]
        if oid:
            assert f"#{oid}" in r["output"], ("reply misses order id", r)
        if prod:
            assert prod.lower() in r["output"].lower(), ("reply misses product", r)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--check", action="store_true", help="only validate the existing file")
    args = ap.parse_args()
    if not args.check:
        rows = generate()
        check_reply_mentions(rows)
        with OUT_PATH.open("w", encoding="utf-8", newline="\n") as f:
            for r in rows:
                r = {k: r[k] for k in ("instruction", "input", "output", "task")}
                f.write(json.dumps(r, ensure_ascii=False) + "\n")
        print(f"wrote {OUT_PATH.relative_to(ROOT)}")
    stats = check(OUT_PATH)
    print("CHECK OK")
    for k, v in stats.items():
        print(f"  {k}: {v}")


if __name__ == "__main__":
    sys.exit(main())
