"""The normalization case table: what the model should read for what the user wrote.

One row per case: (category, written, spoken). `spoken` may be a tuple of readings that are
all right ("two thousand and five" / "two thousand five"). Compared after `comparable`
(case, punctuation and spacing do not count). Shared by tests/unit/test_text_normalize.py
(the spec) and benchmarks/normalization.py (each backend's pass rate and time)."""

from __future__ import annotations

import re

ZH_CASES: list[tuple[str, str, str | tuple[str, ...]]] = [
    ("number", "我有3个苹果", "我有三个苹果"),
    ("number", "共12本书", "共十二本书"),
    ("number", "人口1400000000", ("人口十四亿", "人口一十四亿")),
    ("number", "他跑了100米", ("他跑了一百米", "他跑了100米")),
    ("number", "价格是1,299元", ("价格是一千二百九十九元", "价格是一千两百九十九元")),
    ("number", "负5度", "负五度"),
    ("decimal", "圆周率约为3.14", "圆周率约为三点一四"),
    ("decimal", "增长了0.5倍", "增长了零点五倍"),
    ("ordinal", "第3章", "第三章"),
    ("ordinal", "第21届", "第二十一届"),
    ("ordinal", "排名第1", "排名第一"),
    ("ordinal", "第100名", "第一百名"),
    ("ordinal", "第３章", "第三章"),
    ("date", "2026-12-04", "二零二六年十二月四日"),
    ("date", "2026年12月4日", "二零二六年十二月四日"),
    ("date", "1999年", "一九九九年"),
    ("date", "2026/12/04", "二零二六年十二月四日"),
    ("date", "12月25日是圣诞节", "十二月二十五日是圣诞节"),
    ("time", "13:45", "十三点四十五分"),
    ("time", "会议在9:30开始", "会议在九点三十分开始"),
    ("time", "08:05:30", ("八点五分三十秒", "八点零五分三十秒")),
    ("time", "晚上10点", "晚上十点"),
    ("money", "$1,299.99", ("一千二百九十九点九九美元", "一千两百九十九点九九美元")),
    ("money", "￥1299.99", "一千二百九十九点九九元"),
    ("money", "¥50", "五十元"),
    ("money", "$5", "五美元"),
    ("money", "€20", "二十欧元"),
    ("money", "售价99元", "售价九十九元"),
    ("percent", "50%", "百分之五十"),
    ("percent", "3.5%", "百分之三点五"),
    ("percent", "增长了120%", "增长了百分之一百二十"),
    ("unit", "3 km", "三公里"),
    ("unit", "5kg", "五千克"),
    ("unit", "-3.5°C", ("零下三点五摄氏度", "负三点五摄氏度")),
    ("unit", "100km/h", "每小时一百公里"),
    ("unit", "20cm", "二十厘米"),
    ("phone", "13812345678", ("一三八一二三四五六七八", "幺三八幺二三四五六七八")),
    ("phone", "电话010-12345678", "电话零一零一二三四五六七八"),
    ("phone", "拨打110", "拨打幺幺零"),
    ("fraction", "1/2", "二分之一"),
    ("fraction", "3/4的人", "四分之三的人"),
    ("range", "3-5天", ("三到五天", "三至五天")),
    ("score", "比分是3:2", ("比分是三比二", "比分是三点二分")),
    ("symbol", "A&B", ("A和B", "A and B")),
    ("plain", "你好，世界", "你好，世界"),
]

EN_CASES: list[tuple[str, str, str | tuple[str, ...]]] = [
    ("number", "I have 3 apples.", "I have three apples."),
    ("number", "There are 12 months.", "There are twelve months."),
    ("number", "It weighs 1,500 tons.", ("It weighs one thousand five hundred tons.",
                                         "It weighs fifteen hundred tons.")),
    ("number", "The year had 365 days.", ("The year had three hundred sixty five days.",
                                          "The year had three hundred and sixty five days.")),
    ("number", "Population 8000000000", ("Population eight billion",)),
    ("number", "It fell to -5.", ("It fell to minus five.", "It fell to negative five.")),
    ("decimal", "Pi is 3.14.", ("Pi is three point one four.",)),
    ("decimal", "Grew 0.5 times.", ("Grew zero point five times.", "Grew point five times.")),
    ("ordinal", "the 3rd place", "the third place"),
    ("ordinal", "the 21st century", "the twenty first century"),
    ("ordinal", "his 1st try", "his first try"),
    ("ordinal", "the 100th day", "the one hundredth day"),
    ("ordinal", "on the 2nd floor", "on the second floor"),
    ("date", "2026-12-04", ("the fourth of december twenty twenty six",
                            "december fourth twenty twenty six")),
    ("date", "on December 4, 2026", ("on december fourth twenty twenty six",
                                     "on the fourth of december twenty twenty six",
                                     "on december fourth, twenty twenty six")),
    ("date", "in 1999", ("in nineteen ninety nine",)),
    ("date", "in 2005", ("in two thousand five", "in two thousand and five")),
    ("date", "Jan. 5", ("january fifth", "the fifth of january")),
    ("time", "13:45", ("thirteen forty five", "one forty five p m")),
    ("time", "at 9:30 am", ("at nine thirty a m", "at nine thirty am")),
    ("time", "at 10:05", ("at ten oh five", "at ten o five")),
    ("time", "at 7 pm", ("at seven p m", "at seven pm")),
    ("money", "$1,299.99", ("one thousand two hundred ninety nine dollars ninety nine cents",
                            "one thousand two hundred and ninety nine dollars and ninety nine cents",
                            "twelve hundred ninety nine dollars ninety nine cents",
                            "one thousand two hundred ninety nine dollars and ninety nine cents",
                            "one thousand two hundred and ninety nine dollars ninety nine cents")),
    ("money", "$5", "five dollars"),
    ("money", "It costs $20.", "It costs twenty dollars."),
    ("money", "€30", "thirty euros"),
    ("money", "£12", "twelve pounds"),
    ("money", "$0.50", ("fifty cents", "zero dollars fifty cents")),
    ("percent", "50%", "fifty percent"),
    ("percent", "3.5%", "three point five percent"),
    ("percent", "up 120%", ("up one hundred twenty percent",
                                 "up one hundred and twenty percent")),
    ("unit", "3 km", "three kilometers"),
    ("unit", "5 kg", "five kilograms"),
    ("unit", "-3.5°C", ("minus three point five degrees Celsius",
                        "negative three point five degrees Celsius")),
    ("unit", "100 km/h", ("one hundred kilometers per hour",)),
    ("unit", "20 cm", "twenty centimeters"),
    ("unit", "1 kg", "one kilogram"),
    ("phone", "call 555-123-4567", ("call five five five, one two three, four five six seven",)),
    ("phone", "dial 911", ("dial nine one one", "dial nine eleven")),
    ("abbreviation", "Dr. Smith", "doctor Smith"),
    ("abbreviation", "Mr. Jones", "mister Jones"),
    ("abbreviation", "Mrs. Lee", ("missus Lee", "misses Lee")),
    ("abbreviation", "Main St.", ("Main street",)),
    ("abbreviation", "apples, pears, etc.", ("apples, pears, et cetera",)),
    ("fraction", "1/2 cup", ("one half cup", "a half cup")),
    ("range", "3-5 days", ("three to five days",)),
    ("symbol", "you & me", "you and me"),
    ("plain", "Hello, world.", "Hello, world."),
]


def comparable(text: str) -> str:
    """Text as compared: lower case, no punctuation or hyphens, single spaces (a reading
    differs in words, not in commas)."""
    text = re.sub(r"[^\w\s]|_", " ", text.lower())
    return " ".join(text.split())


def matches(spoken: str, expected: str | tuple[str, ...]) -> bool:
    readings = expected if isinstance(expected, tuple) else (expected,)
    got = comparable(spoken)
    if re.search(r"[\u4e00-\u9fff]", got):  # Chinese: spaces do not count either
        return got.replace(" ", "") in {comparable(r).replace(" ", "") for r in readings}
    return got in {comparable(r) for r in readings}
