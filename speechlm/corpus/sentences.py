"""The project's own English sentences: a written list plus a seeded grammar, and a split by sentence."""

from __future__ import annotations

import random
import re
import string
from dataclasses import dataclass
from typing import Callable

from num2words import num2words

from speechlm.errors import SpeechLMError

SPLITS = ("train", "dev", "test")
MIN_WORDS, MAX_WORDS = 3, 25

# Sentences written by hand: everyday statements, questions, exclamations and commands of every
# length, so the corpus is not only grammar output. Numbers are spelled out everywhere because
# flite, festival and espeak-ng read digits differently ("$12.50", "3:45"), and the text must say
# exactly what every voice speaks.
WRITTEN: tuple[str, ...] = (
    "Good morning.", "Where are my keys?", "Please close the door.", "That was wonderful!",
    "I will be there soon.", "Nobody knows the answer.", "Could you say that again?",
    "The kettle is boiling.", "Thank you very much!", "Let's go home now.",
    "What a beautiful day it is!", "Turn left at the next corner.", "The bus is running late again.",
    "She opened the window to let in some fresh air.", "Have you ever been to the mountains in winter?",
    "He forgot his umbrella, so he got soaked on the way home.",
    "The library closes early on Sundays.", "Why didn't anyone tell me about the meeting?",
    "Keep your voice down, the baby is finally asleep.", "I can't believe we won the match!",
    "The soup needs a little more salt.", "Would you like tea or coffee?",
    "Our neighbours painted their fence bright yellow.", "Watch out for the ice on the steps!",
    "The children built a castle out of cardboard boxes.",
    "It takes about ten minutes to walk to the station from here.",
    "Do you know where the nearest pharmacy is?", "The old bridge was finally repaired last spring.",
    "Please remember to water the plants while I'm away.", "What time does the film start?",
    "A strong wind blew the leaves across the yard.", "He reads the newspaper every morning with breakfast.",
    "Never give up on something you really care about.", "The train to the coast was packed with tourists.",
    "She speaks three languages and is learning a fourth.", "How much does this jacket cost?",
    "The museum has a new exhibition about ancient ships.", "We should leave before the traffic gets worse.",
    "My grandmother still writes letters by hand.", "Is there any milk left in the fridge?",
    "Stop!", "Hurry up, we're going to miss it!", "That's not what I meant at all.",
    "The printer on the second floor is out of paper again.", "Could you pass me the bread, please?",
    "The moon looked enormous above the hills tonight.", "I think it might rain later this afternoon.",
    "Our flight was delayed because of fog.", "Who left the lights on in the kitchen?",
    "The cat jumped onto the table and knocked over a glass.", "Let me know if you need anything else.",
    "The concert was sold out within an hour.", "Everyone clapped when the pilot landed the plane.",
    "He fixed the bicycle chain with an old screwdriver.", "Where did you learn to cook like this?",
    "The garden looks lovely after the rain.", "Don't forget to lock the back door.",
    "The river rose quickly after three days of heavy rain.", "Which road leads to the harbour?",
    "I'm afraid the shop is closed for the holidays.", "That's the funniest thing I've heard all week!",
    "The doctor said I should get more sleep.", "We watched the sunset from the top of the hill.",
    "Can you help me carry these boxes upstairs?", "The price of petrol went up again this month.",
    "A small boat drifted slowly towards the shore.", "Please speak a little more slowly.",
    "The lecture was long, but surprisingly interesting.", "How long have you lived in this town?",
    "She found an old photograph hidden inside the book.", "The phone rang just as I was leaving.",
    "Well done!", "See you tomorrow.", "Is this seat taken?", "Not again!",
    "Excuse me, is this the way to the museum?", "We ran out of sugar, so I used honey instead.",
    "The team practised every evening for a month before the final.",
    "Would you mind opening the window a little?", "The baker starts work long before sunrise.",
    "Thunder rolled across the valley all night long.", "My brother collects stamps from all over the world.",
    "The meeting has been moved to next Thursday.", "Why is the sky blue during the day?",
    "Fresh bread smells better than almost anything.", "They planted apple trees along the path.",
    "You should have seen the look on his face!", "The elevator is out of order, so take the stairs.",
    "Our teacher read us a story about a clever fox.", "What are you planning to do this weekend?",
    "A dog barked somewhere in the distance.", "The new bridge will open to traffic next year.",
    "I usually walk to work when the weather is nice.", "Could you spell your last name for me?",
    "The parcel arrived a day earlier than expected.", "Please wait here until your name is called.",
    "The waves crashed against the rocks below the lighthouse.", "Nothing tastes as good as homemade soup.",
    "How did the interview go?", "She laughed so hard that she started to cry.",
    "The streets were quiet after the festival ended.", "Remember to bring a warm coat and good boots.",
    "The computer crashed right before I saved my work.", "Do you think the shop will still be open?",
    "Look at all those stars!", "The farmer checked on the sheep before dawn.",
    "We can take the early train if you want.", "The coffee here is strong but very good.",
    "I have no idea how this machine works.", "Somebody left a bunch of flowers on the doorstep.",
    "The hikers reached the summit just before noon.", "Which of these two colours do you prefer?",
    "The city council voted to build a new park near the river.",
    "After a long day at work, she likes to read in the bath.",
    "If the weather stays dry, we will have a picnic by the lake.",
    "The scientists spent years studying how birds find their way home.",
    "When I was young, we spent every summer at my uncle's farm by the sea.",
    "The old man at the market sells the sweetest strawberries I have ever tasted.",
    "Before you leave the house, please make sure that all the windows are closed.",
    "Although it was raining heavily, thousands of people came to watch the parade through the town.",
    "My sister and her husband are moving to a small village in the north next spring.",
    "The restaurant on the corner serves breakfast all day, which is perfect for late risers like me.",
    "It was so quiet in the forest that we could hear the snow falling from the branches.",
    "Nobody expected the little team from the village to reach the final, but they did.",
    "Could you tell me whether this bus stops near the hospital or the university?",
    "The engineer explained that the bridge could carry much heavier trucks than before.",
    "Every Saturday morning my father makes pancakes and plays old records in the kitchen.",
    "He spent the whole afternoon trying to teach the parrot to say good night.",
    "Why do we always find the things we are looking for in the last place we check?",
    "In the end, we decided to stay at home, light a fire, and watch old films until long after midnight.",
    "The hotel looked nothing like the pictures, but the staff were so kind that we forgave them almost immediately.",
    "As the sun came up over the fields, the farmer and his two dogs were already walking towards the barn.",
    "Please read the instructions carefully before you start, because you cannot change your answers once they are submitted.",
    "She told me that the best way to learn a language is to make mistakes every day and laugh about them.",
    "My first car was small, loud and always breaking down, but I loved it more than any car I have owned since.",
    "Would it be possible to move our appointment to later in the week, since I will be away until Wednesday evening?",
    # Words that carry espeak's rarest English phones (glottal stop, syllabic n, "aɪə", "aɪɚ").
    "Sew the button back on with cotton thread, please.", "I'm certain the kitten is hiding behind the curtain.",
    "The science museum is open for another hour.", "The lion looked tired but quiet after its dinner.",
    "Prices are higher than they were a year ago, aren't they?", "Keep the fire burning while I find more dry logs.",
    "The giant spent a quiet evening reading about the history of science.",
    "Tell me a story about the glory days of the old railway.",
    "I'm so proud of you!", "What on earth happened here?", "Quiet, please.", "It's freezing outside!",
    "The soup is ready.", "Call me when you arrive.", "I lost my glasses again.", "Are you sure?",
)

# Slot vocabularies for the grammar.  Values carry their own article so "a" / "an" stay right.
NAMES = (
    "Alice", "Ben", "Carlos", "Diana", "Edward", "Fatima", "George", "Hannah", "Ivan", "Julia",
    "Kevin", "Laura", "Mohammed", "Nina", "Oliver", "Priya", "Quentin", "Rachel", "Samuel", "Tara",
    "Umar", "Victoria", "William", "Yuki", "Zoe", "Aaron", "Bella", "Daniel", "Emily", "Frank",
    "Grace", "Henry", "Isabel", "Jack", "Kate", "Leo", "Maria", "Nathan", "Olivia", "Peter",
    "Rosa", "Simon", "Thomas", "Ursula", "Vincent", "Wendy", "Aisha", "Bruno", "Chloe", "David",
    "Elena", "Felix", "Gemma", "Hugo", "Irene", "James", "Lucy", "Martin", "Nora", "Oscar",
)
SURNAMES = (
    "Patel", "Smith", "Garcia", "Brown", "Nakamura", "Okafor", "Miller", "Kowalski", "Jensen",
    "Walker", "Rossi", "Murphy", "Schmidt", "Fischer", "Campbell", "Lopez", "Green", "Hughes", "Hutton",
)
CITIES = (
    "London", "Paris", "Chicago", "Boston", "Seattle", "Madrid", "Cairo", "Tokyo", "Lisbon", "Dublin",
    "Oslo", "Toronto", "Sydney", "Nairobi", "Berlin", "Vienna", "Prague", "Athens", "Rome", "Glasgow",
    "Manchester", "Houston", "Atlanta", "Denver", "Edinburgh", "Montreal", "Mexico City", "Helsinki",
)
PLACES = (
    "the station", "the library", "the post office", "the bakery", "the harbour", "the airport",
    "the town hall", "the museum", "the market", "the hospital", "the school gate", "the park",
    "the cinema", "the bank", "the swimming pool", "the bus stop", "the garden centre", "the office",
)
THINGS = (
    "an umbrella", "a red notebook", "a pair of gloves", "a bicycle", "a birthday cake", "a map",
    "a wooden chair", "a new laptop", "a box of tools", "a basket of apples", "an old camera",
    "a blue scarf", "a guitar", "a kite", "a toaster", "a lamp", "a suitcase", "a painting",
    "a pair of mittens", "a cotton shirt", "a button",
)
FOODS = (
    "pancakes", "tomato soup", "fresh bread", "chocolate cake", "rice and beans", "fish and chips",
    "lemon tea", "apple pie", "roast potatoes", "cheese sandwiches", "noodles", "strawberries",
)
ANIMALS = ("dog", "cat", "horse", "parrot", "rabbit", "goat", "fox", "owl", "duck", "tortoise")
JOBS = (
    "a nurse", "a teacher", "an engineer", "a pilot", "a baker", "a lawyer", "a plumber",
    "a journalist", "an architect", "a farmer", "a librarian", "a chef", "a dentist", "a musician",
)
ADJECTIVES = ("quiet", "busy", "cold", "crowded", "lovely", "noisy", "peaceful", "empty", "dark")
KINDS = ("clever", "friendly", "tiny", "noisy", "lazy", "curious", "beautiful", "grumpy", "playful")
WEATHER = ("dry", "sunny", "warm", "mild", "calm", "clear")
ACTIVITIES = (
    "play tennis", "go swimming", "visit the museum", "bake some bread", "paint the fence",
    "walk the dog", "fix the roof", "learn the piano", "watch a film", "clean the garage",
)
DAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")
MONTHS = (
    "January", "February", "March", "April", "May", "June", "July", "August", "September",
    "October", "November", "December",
)
CURRENCIES = (("dollar", "dollars", "cent", "cents"), ("pound", "pounds", "penny", "pence"),
              ("euro", "euros", "cent", "cents"))
UNITS = ("kilograms", "litres", "pages", "boxes", "bags", "bottles")


def words(n: int) -> str:
    """A number as words, without the commas num2words puts in thousands (they read as pauses)."""
    return num2words(n).replace(",", "")


def _money(rng: random.Random) -> str:
    one, many, cent, cents = rng.choice(CURRENCIES)
    amount = rng.choice([rng.randint(2, 20), rng.randint(21, 99), rng.randint(100, 999), rng.randint(1000, 9000)])
    text = f"{words(amount)} {many}"
    if amount < 100 and rng.random() < 0.5:
        c = rng.choice([5, 10, 15, 20, 25, 50, 75, 99])
        text += f" and {words(c)} {cents if c != 1 else cent}"
    return text


def _time(rng: random.Random) -> str:
    h = rng.randint(1, 12)
    nxt = h % 12 + 1
    return rng.choice([
        f"{words(h)} o'clock", f"half past {words(h)}", f"a quarter past {words(h)}",
        f"a quarter to {words(nxt)}", f"{words(h)} {words(rng.choice([10, 15, 20, 40, 45, 50]))}",
        f"{words(h)} thirty in the {rng.choice(['morning', 'evening'])}", "noon", "midnight",
        f"twenty past {words(h)}", f"ten to {words(nxt)}",
    ])


def _date(rng: random.Random) -> str:
    month, day = rng.choice(MONTHS), num2words(rng.randint(1, 28), to="ordinal")
    return rng.choice([
        f"the {day} of {month}", f"{month} the {day}", f"{rng.choice(DAYS)}, the {day} of {month}",
        f"{month} {day}, {num2words(rng.randint(1950, 2030), to='year')}",
    ])


# Slot name -> how to draw a value.  "{name2}" draws from "name" but differs from "{name}".
SLOTS: dict[str, Callable[[random.Random], str]] = {
    "name": lambda r: r.choice(NAMES),
    "surname": lambda r: r.choice(SURNAMES),
    "city": lambda r: r.choice(CITIES),
    "place": lambda r: r.choice(PLACES),
    "thing": lambda r: r.choice(THINGS),
    "food": lambda r: r.choice(FOODS),
    "animal": lambda r: r.choice(ANIMALS),
    "job": lambda r: r.choice(JOBS),
    "adj": lambda r: r.choice(ADJECTIVES),
    "kind": lambda r: r.choice(KINDS),
    "weather": lambda r: r.choice(WEATHER),
    "activity": lambda r: r.choice(ACTIVITIES),
    "day": lambda r: r.choice(DAYS),
    "month": lambda r: r.choice(MONTHS),
    "small": lambda r: words(r.randint(2, 12)),
    "number": lambda r: words(r.choice([r.randint(13, 99), r.randint(100, 999), r.randint(1000, 99000)])),
    "quantity": lambda r: f"{words(r.randint(2, 60))} {r.choice(UNITS)}",
    "distance": lambda r: f"{words(r.randint(2, 400))} {r.choice(['miles', 'kilometres'])}",
    "duration": lambda r: f"{words(r.randint(2, 50))} {r.choice(['minutes', 'hours', 'days', 'weeks', 'months'])}",
    "many": lambda r: words(r.randint(10, 900) * 100),
    "percent": lambda r: f"{words(r.randint(2, 99))} percent",
    "degrees": lambda r: f"{words(r.randint(-10, 38))} degrees",
    "year": lambda r: num2words(r.randint(1900, 2030), to="year"),
    "phone": lambda r: ", ".join(" ".join(words(int(d)) for d in str(r.randint(100, 9999))) for _ in range(2)),
    "money": _money,
    "time": _time,
    "date": _date,
}

TEMPLATES: tuple[str, ...] = (
    "{name} is waiting at {place}.", "Has anyone seen {name} today?", "Tell {name} I said hello!",
    "{name} bought {thing} for {money}.", "The tickets cost {money} each.", "Is it really {money}?",
    "{name} and {name2} met in {city} in {year}.", "The meeting starts at {time} on {day}.",
    "Can we meet at {place} at {time}?", "My train leaves at {time}, so I can't stay long.",
    "{name} was born on {date}.", "The shop reopens on {date}.", "Is the party on {date} or the week after?",
    "We arrived in {city} on a {weather} {day} evening.", "It's {degrees} in {city} right now.",
    "The forecast says it will be {degrees} and sunny on {day}.", "Call {name} back on {phone}.",
    "Her number is {phone}, but she rarely answers.", "The report says prices rose by {percent} last year.",
    "Only {percent} of the tickets have been sold so far.", "We walked {distance} before we found {place}.",
    "{name} works as {job} in {city}.", "Did you know that {name} used to be {job}?",
    "Doctor {surname} will see you at {time}.", "Mister {surname} lives next to {place}.",
    "{name} cooked {food} for everyone on {day}!", "I could eat {food} every single day.",
    "Would you like some {food} before we go?", "Why does {name} always want {food} on {day}?",
    "{name} has a {animal} called {name2}.", "There's a {animal} sitting outside {place}!",
    "What a {kind} {animal}!", "The {animal} ran straight past {name} and into the garden.",
    "{name} wants to {activity} on {day}.", "Shall we {activity} this weekend?",
    "Let's {activity} before it gets dark!", "{name} promised to {activity} with {name2} after lunch.",
    "The library has {many} books.", "About {number} people came to the concert in {city}.",
    "There are {small} apples left in the bowl.", "I counted {small} boats in the harbour.",
    "The village had only {number} residents in {year}.", "{name} paid {money} for a {kind} old {animal}.",
    "The flight from {city} to {city2} takes {duration}.", "How far is it from {city} to {city2}?",
    "{name} moved from {city} to {city2} in {month}.", "Is {city} colder than {city2} in {month}?",
    "The {adj} cafe near {place} opens at {time}.", "{place} was unusually {adj} this morning.",
    "Please meet me at {place} at {time} sharp.", "Why is {place} so {adj} today?",
    "{name} left {thing} at {place} again!", "Have you seen {thing} anywhere?",
    "Somebody left {thing} on the train to {city}.", "{name} asked {name2} to look after {thing}.",
    "On {date}, {name} finally finished the book.", "The museum will be closed from {date} until {date2}.",
    "By {year}, the town had grown to {number} people.", "In {month}, the days in {city} get noticeably shorter.",
    "{name}, can you hear me?", "Good evening, {name}!", "Thank you so much, {name}!",
    "Excuse me, {name}, is this your {animal}?", "Happy birthday, {name}!", "Watch out, {name}!",
    "{name} told me the film starts at {time}.", "The last bus to {city} leaves at {time}.",
    "{name} saved {money} by cycling to work for {duration}.", "Rent in {city} went up by {percent}.",
    "The bakery sells {food} for {money} a box.", "Would {money} be enough for two tickets?",
    "Does {name} still live in {city}, or did she move?", "When did {name} start working as {job}?",
    "{name} and {name2} have been friends since {year}.", "The bridge was built in {year}.",
    "We need {small} more chairs for the meeting on {day}.", "Please bring {small} copies of the report.",
    "The next train to {city} leaves from platform {small}.", "Your seat is in row {small}, by the window.",
    "The temperature dropped to {degrees} overnight.", "It was {degrees} when we landed in {city}.",
    "I think {name} is the best player on the team.", "Nobody believed {name} could {activity}.",
    "After living in {city} for {duration}, {name} decided to become {job}.",
    "If the weather in {city} stays {weather}, {name} and {name2} will {activity} on {day}.",
    "{name} said the parcel would arrive on {date}, but it still hasn't come.",
    "Last {month}, {name} drove {distance} to visit an old friend in {city}.",
    "Although the tickets cost {money}, {name} says the concert was worth every penny.",
    "The company hired {small} new engineers in {city} and opened an office near {place}.",
    "When {name} finally reached {place} at {time}, everyone had already gone home.",
    "Do you remember the {weather} summer when we all went to {city} together?",
    "The shop sold {quantity} of flour on {day}, so {name} had to drive to {city} for more.",
    "Long before {name} became {job}, she spent {duration} travelling between {city} and {city2} with nothing but {thing}.",
    "On {date}, the council announced that {place} would close for {duration} while workers repaired the roof and the old heating system.",
    "{name} and {name2} spent {small} days walking from {city} to the coast, and they still talk about the {kind} {animal} that followed them.",
    "If you reach {place} before {time}, ask for Doctor {surname}, who has kindly agreed to show you around the building.",
    "When the storm finally passed on {day}, {name} counted {number} fallen trees between the farm and {place}.",
    "Nobody in {city} could remember a winter as {adj} as the one in {year}, when the river froze for {duration}.",
    "Ask {name} whether the train from {city} still arrives at {time}, because I need to know before I book a taxi.",
    "{name} says the {kind} {animal} next door wakes her at {time} every morning, and she has had enough of it!",
    "The new library near {place} has room for {many} books, a small cafe, and a garden where children can read outside.",
)

_PLAIN = re.compile(r"[^a-z0-9' ]+")


def normalize_key(text: str) -> str:
    """A sentence's identity: case, punctuation and spacing do not make two sentences distinct."""
    return " ".join(_PLAIN.sub(" ", text.lower()).split())


def word_count(text: str) -> int:
    return len(text.split())


def render(template: str, rng: random.Random) -> str:
    """Fill a template's slots; numbered slots ("{city2}") differ from the plain one when possible."""
    values: dict[str, str] = {}
    for _, field, _, _ in string.Formatter().parse(template):
        if field is None or field in values:
            continue
        base = field.rstrip("0123456789")
        taken = {v for k, v in values.items() if k.rstrip("0123456789") == base}
        for _ in range(20):
            value = SLOTS[base](rng)
            if value not in taken:
                break
        values[field] = value
    text = template.format(**values)
    return text[0].upper() + text[1:]


def generate_sentences(n: int, seed: int = 0, written_share: float = 0.12) -> list[str]:
    """``n`` distinct sentences, the same ones for the same seed; the list for ``n`` is a prefix of the
    list for any larger ``n``, so the tiny corpus speaks sentences the default one also has."""
    rng = random.Random(seed)
    written = list(WRITTEN)
    rng.shuffle(written)
    out: list[str] = []
    seen: set[str] = set()
    attempts = 0
    while len(out) < n:
        attempts += 1
        if attempts > 50 * n + 1000:
            raise SpeechLMError(f"the sentence grammar produced only {len(out)} distinct sentences; {n} were asked for")
        if written and rng.random() < written_share:
            text = written.pop()
        else:
            text = render(rng.choice(TEMPLATES), rng)
        key = normalize_key(text)
        if key in seen or not MIN_WORDS <= word_count(text) <= MAX_WORDS:
            continue
        seen.add(key)
        out.append(text)
    return out


@dataclass(frozen=True)
class Sentence:
    id: str  # "s00042": position in generation order, stable across sizes
    split: str  # one of SPLITS
    text: str


def split_sentences(texts: list[str], dev_fraction: float, test_fraction: float, seed: int = 0) -> list[Sentence]:
    """Assign each sentence to train/dev/test by a seeded shuffle, so the held-out sets are whole sentences
    the training data never says (texts are distinct, so no test text can also be a train text)."""
    n = len(texts)
    n_dev, n_test = max(1, round(n * dev_fraction)), max(1, round(n * test_fraction))
    if n_dev + n_test >= n:
        raise SpeechLMError(f"{n} sentences are too few for {n_dev} dev + {n_test} test sentences and a train set")
    order = list(range(n))
    random.Random(seed + 1).shuffle(order)
    split_of = {i: "test" for i in order[:n_test]}
    split_of.update({i: "dev" for i in order[n_test:n_test + n_dev]})
    return [Sentence(f"s{i:05d}", split_of.get(i, "train"), t) for i, t in enumerate(texts)]
