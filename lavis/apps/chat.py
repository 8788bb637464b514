"""``python -m lavis.chat --model PATH --image FILE``: talk to a trained model about an image.

Interactive. Follow-ups go as the model's conversation contract says (as the server does): a
model tuned on conversations gets the earlier turns in its training format; a single-turn model
answers each question on its own, which the chat says at the start (``--history`` overrides it for
experiments). ``--question TEXT`` answers once and exits. Commands in the conversation: ``/image FILE`` (another
image, a new conversation), ``/reset``, ``/quit`` (or Ctrl-D).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence

from lavis.apps.inference import Answer, Answerer, Decoding
from lavis.apps.inference.conversation import describe
from lavis.apps.inference.images import image_from_file
from lavis.common.conversation import Turn
from lavis.common.errors import LavisError

HELP = "commands: /image FILE (new image, new conversation), /reset, /quit"


def confidence(answer: Answer) -> str:
    yes_no = answer.choices[0].yes_no
    return "" if yes_no is None else f"  [yes {yes_no['yes']:.0%} / no {yes_no['no']:.0%}]"


class Conversation:
    """One image and the turns so far."""

    def __init__(self, answerer: Answerer, decoding: Decoding, image_path: str) -> None:
        self.answerer = answerer
        self.decoding = decoding
        self.history: list[Turn] = []
        self.set_image(image_path)

    def set_image(self, path: str) -> None:
        self.image = self.answerer.image_tensor(image_from_file(path))
        self.image_path = path
        self.history = []

    def ask(self, question: str) -> Answer:
        query = self.answerer.query(self.image, question, self.history, self.decoding)
        answer = self.answerer.answer([query])[0]
        self.history.append(Turn(question, answer.choices[0].text))
        return answer


def interactive(conversation: Conversation, name: str) -> None:
    print(f"Talking to {name} about {conversation.image_path}. {HELP}.", file=sys.stderr)
    print(f"This model was tuned {describe(conversation.answerer.conversation)}.", file=sys.stderr)
    if hasattr(sys.stdin, "reconfigure"):  # bytes that are not UTF-8 reach the question check, not input()
        sys.stdin.reconfigure(errors="surrogateescape")
    while True:
        try:
            line = input("you> ").strip()
        except (EOFError, KeyboardInterrupt):
            print(file=sys.stderr)
            return
        if not line:
            continue
        if line in ("/quit", "/exit"):
            return
        if line == "/reset":
            conversation.history = []
            print("(new conversation)", file=sys.stderr)
            continue
        if line.startswith("/image"):
            try:
                conversation.set_image(line.removeprefix("/image").strip())
                print(f"(new conversation about {conversation.image_path})", file=sys.stderr)
            except LavisError as err:
                print(f"error: {err}", file=sys.stderr)
            continue
        if line.startswith("/"):
            print(HELP, file=sys.stderr)
            continue
        try:
            answer = conversation.ask(line)
        except LavisError as err:
            print(f"error: {err}", file=sys.stderr)
            continue
        print(f"model> {answer.choices[0].text}{confidence(answer)}", flush=True)


def main(argv: Sequence[str] | None = None) -> int:
    from lavis.apps.inference.cli import add_model_arguments, load_answerer

    parser = argparse.ArgumentParser(prog="python -m lavis.chat", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    add_model_arguments(parser)
    parser.add_argument("--image", required=True, help="the image to talk about")
    parser.add_argument("--question", default=None, help="answer this one question and exit")
    parser.add_argument("--json", action="store_true", help="with --question: print the answer as JSON")
    args = parser.parse_args(argv)
    try:
        image_from_file(args.image)  # a bad image fails before the model loads
        answerer, decoding = load_answerer(args, chat=True)
        conversation = Conversation(answerer, decoding, args.image)
        if args.question is None:
            interactive(conversation, answerer.name)
            return 0
        answer = conversation.ask(args.question)
    except LavisError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    choice = answer.choices[0]
    if args.json:
        print(json.dumps({"answer": choice.text, "yes_no": choice.yes_no, "finish_reason": choice.finish_reason}))
    else:
        print(f"{choice.text}{confidence(answer)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
