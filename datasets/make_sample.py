#!/usr/bin/env python3
"""Writes datasets/sample_reasoning.jsonl: a small corpus of worked word problems
in the seed's format {"question", "reasoning", "solution"}, for the demo and the
tests. Written by the metareuse project; seeded, so the output is reproducible.

    python3 datasets/make_sample.py [--records 400] [--seed 7] > datasets/sample_reasoning.jsonl
"""
import argparse
import json
import random

NAMES = ["Ava", "Ben", "Chloe", "Dev", "Elena", "Farid", "Grace", "Hugo", "Iris", "Jonah", "Kemi", "Liam",
         "Maya", "Noor", "Omar", "Priya", "Quinn", "Rosa", "Sami", "Tara"]
ITEMS = ["apples", "pencils", "stickers", "marbles", "books", "cookies", "cards", "shells"]


def shop(rng):
    name, item = rng.choice(NAMES), rng.choice(ITEMS)
    count, price = rng.randint(2, 12), rng.randint(2, 9)
    total = count * price
    question = f"{name} buys {count} {item} that cost ${price} each. How much does {name} spend?"
    reasoning = (f"First find the total cost of the {item}.\n"
                 f"Multiply the number of {item} by the price of each one.\n"
                 f"{count} * {price} = {total}.\n"
                 f"So {name} spends ${total}.")
    return question, reasoning, str(total)


def rate(rng):
    name = rng.choice(NAMES)
    speed, hours = rng.randint(3, 15), rng.randint(2, 8)
    distance = speed * hours
    question = f"{name} rides a bike at {speed} miles per hour for {hours} hours. How far does {name} ride?"
    reasoning = (f"The distance is the speed times the time.\n"
                 f"Multiply the speed by the number of hours.\n"
                 f"{speed} * {hours} = {distance}.\n"
                 f"So {name} rides {distance} miles.")
    return question, reasoning, str(distance)


def share(rng):
    name, item = rng.choice(NAMES), rng.choice(ITEMS)
    friends = rng.randint(2, 6)
    each = rng.randint(2, 9)
    total = friends * each
    question = f"{name} shares {total} {item} equally among {friends} friends. How many does each friend get?"
    reasoning = (f"To share equally, divide the total by the number of friends.\n"
                 f"Divide both numbers to find the amount for each friend.\n"
                 f"{total} / {friends} = {each}.\n"
                 f"So each friend gets {each} {item}.")
    return question, reasoning, str(each)


def change(rng):
    name, item = rng.choice(NAMES), rng.choice(ITEMS)
    start, given, bought = rng.randint(10, 40), rng.randint(1, 9), rng.randint(1, 9)
    end = start - given + bought
    question = (f"{name} has {start} {item}, gives away {given}, and then buys {bought} more. "
                f"How many {item} does {name} have now?")
    reasoning = (f"First subtract the number given away from the starting amount.\n"
                 f"{start} - {given} = {start - given}.\n"
                 f"Then add the number bought to find the new total.\n"
                 f"{start - given} + {bought} = {end}.\n"
                 f"So {name} has {end} {item} now.")
    return question, reasoning, str(end)


def equation(rng):
    x, a = rng.randint(2, 12), rng.randint(2, 6)
    b = rng.randint(1, 20)
    c = a * x + b
    question = f"If {a} times a number plus {b} equals {c}, what is the number?"
    reasoning = (f"Let x be the unknown number.\n"
                 f"The equation is {a}x + {b} = {c}.\n"
                 f"Subtract {b} from both sides to get {a}x = {c - b}.\n"
                 f"Divide both sides by {a} to get x = {x}.\n"
                 f"So the number is {x}.")
    return question, reasoning, str(x)


FAMILIES = [shop, rate, share, change, equation]


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--records", type=int, default=400)
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()
    rng = random.Random(args.seed)
    for _ in range(args.records):
        question, reasoning, solution = rng.choice(FAMILIES)(rng)
        print(json.dumps({"question": question, "reasoning": reasoning, "solution": solution}))


if __name__ == "__main__":
    main()
