"""When does the member speak? Pure policy decisions."""

from bot.config import parse_settings
from bot.events import ReplyRef
from bot.policy import Facts, decide, parse_command
from tests.fakes import make_message

CMDS = Facts(known_commands=frozenset({"help", "remind", "summary"}))


def settings(extra: str = ""):
    return parse_settings("bot: {name: Pai}\n" + extra)


def test_platform_mention_triggers():
    d = decide(make_message("what do you think?", mentions_me=True), settings(), CMDS)
    assert d.speak and d.reason == "mention"


def test_name_in_text_triggers_and_is_stripped_from_the_prompt():
    d = decide(make_message("@Pai, where do we eat?"), settings(), CMDS)
    assert d.speak and d.prompt == "where do we eat?"
    assert decide(make_message("pai what's up"), settings(), CMDS).speak


def test_name_inside_a_word_does_not_trigger():
    assert not decide(make_message("I paid the bill"), settings(), CMDS).speak
    assert not decide(make_message("Paisley is nice"), settings(), CMDS).speak


def test_plain_chatter_is_not_answered():
    d = decide(make_message("see you tomorrow"), settings(), CMDS)
    assert not d.speak and d.reason == "not addressed"


def test_reply_to_the_bot_triggers():
    msg = make_message("and then?", reply_to=ReplyRef("bot-1", "earlier answer"))
    assert decide(msg, settings(), Facts(reply_to_me=True)).reason == "reply to me"
    assert not decide(msg, settings(), Facts(reply_to_me=False)).speak


def test_known_command_parsed_with_args():
    d = decide(make_message("/remind in 2h stand up"), settings(), CMDS)
    assert (d.speak, d.command, d.args) == (True, "remind", "in 2h stand up")


def test_command_for_another_bot_is_ignored():
    assert not decide(make_message("/help@OtherBot"), settings(), CMDS).speak
    assert decide(make_message("/help@Pai"), settings(), CMDS).command == "help"


def test_unknown_command_without_mention_is_ignored():
    assert not decide(make_message("/nosuch thing"), settings(), CMDS).speak


def test_direct_message_triggers():
    assert decide(make_message("hi", is_direct=True), settings(), CMDS).reason == "direct message"


def test_direct_messages_can_be_switched_off():
    s = settings("access: {allow_direct_messages: false}")
    assert not decide(make_message("hi", is_direct=True), s, CMDS).speak


def test_keywords_trigger():
    s = settings("triggers: {keywords: [deadline]}")
    assert decide(make_message("when is the DEADLINE again"), s, CMDS).reason == "keyword"


def test_own_and_other_bots_messages_never_trigger_by_default():
    assert not decide(make_message("@Pai hi", from_me=True), settings(), CMDS).speak
    assert decide(make_message("@Pai hi", is_bot=True), settings(), CMDS).reason == "message from a bot"
    assert decide(make_message("@Pai hi", is_bot=True), settings("triggers: {respond_to_bots: true}"), CMDS).speak


def test_group_allowlist_is_fail_closed():
    s = settings('access: {allowed_groups: ["fake:g1"]}')
    assert decide(make_message("@Pai hi", chat="g1"), s, CMDS).speak
    assert decide(make_message("@Pai hi", chat="g2"), s, CMDS).reason == "group not allowed"


def test_user_allowlist_by_immutable_id_not_display_name():
    s = settings('access: {allowed_users: ["fake:u1"]}')
    assert decide(make_message("@Pai hi", author="u1", name="Mallory"), s, CMDS).speak
    assert not decide(make_message("@Pai hi", author="u2", name="u1"), s, CMDS).speak


def test_blocked_users_and_disabled_groups():
    s = settings('access: {blocked_users: ["fake:troll"]}\ngroups: {"fake:off": {enabled: false}}')
    assert not decide(make_message("@Pai hi", author="troll"), s, CMDS).speak
    assert not decide(make_message("@Pai hi", chat="off"), s, CMDS).speak


def test_chinese_bot_name():
    s = parse_settings("bot: {name: 派派}")
    assert decide(make_message("派派 明天几点开会？"), s, CMDS).speak
    assert decide(make_message("@派派 你好"), s, CMDS).prompt == "你好"


def test_parse_command_forms():
    assert parse_command("/todo", ("/",)) == ("todo", "", "")
    assert parse_command("!summary since monday", ("!", "/")) == ("summary", "", "since monday")
    assert parse_command("/forget-me", ("/",)) == ("forget_me", "", "")
    assert parse_command("hello /help", ("/",)) is None


def test_messages_caught_up_long_after_they_were_sent_are_not_answered():
    msg = make_message("@Pai are you there?")
    assert decide(msg, settings(), Facts(age_s=60)).speak
    assert decide(msg, settings(), Facts(age_s=3 * 3600)).reason == "too old to answer"
    assert decide(msg, settings("triggers: {answer_within_minutes: 0}"), Facts(age_s=10**7)).speak


def test_a_command_after_a_mention_is_a_command():
    # Where the bot hears only mentions (a WeCom group), "@派 /forget-me" is the only way to send a command.
    chinese = settings("bot:\n  name: 派\n")
    mentioned = decide(make_message("@派 /forget-me", mentions_me=True), chinese, CMDS_ALL)
    assert (mentioned.command, mentioned.args) == ("forget_me", "")
    named = decide(make_message("Pai, /remind in 2h tea"), settings(), CMDS_ALL)
    assert (named.command, named.args) == ("remind", "in 2h tea")
    unaddressed = decide(make_message("bob /remind in 2h tea"), settings(), CMDS_ALL)
    assert unaddressed.speak is False


CMDS_ALL = Facts(known_commands=frozenset({"help", "remind", "forget_me"}))
