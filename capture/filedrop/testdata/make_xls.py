#!/usr/bin/python3
"""Writes the legacy Excel 97-2003 (.xls, BIFF8) fixtures of the filedrop tests.

Run from this directory with Debian's python3-xlwt (apt-get install -y python3-xlwt):
    /usr/bin/python3 make_xls.py
xlwt writes no timestamps, so the output is byte-for-byte reproducible.
"""
import datetime

import xlwt

HEADER = ["身份证号", "姓名", "残疾等级", "发证日期", "户编号", "补贴"]
DATE = xlwt.easyxf(num_format_str="YYYY-MM-DD")
MONEY = xlwt.easyxf(num_format_str="0.00")


def write(path, header, rows, merge=None):
    wb = xlwt.Workbook(encoding="utf-8")
    ws = wb.add_sheet("花名册")
    if merge:
        # merge = (first_col, last_col, text): header cells merged across columns.
        first, last, text = merge
        ws.write_merge(0, 0, first, last, text)
    for c, h in enumerate(header):
        if merge and merge[0] <= c <= merge[1]:
            continue
        ws.write(0, c, h)
    for r, row in enumerate(rows, start=1):
        if row is None:
            continue  # an empty row, skipped by the reader
        for c, v in enumerate(row):
            if v is None:
                continue  # empty cell
            h = header[c]
            if isinstance(v, datetime.date):
                ws.write(r, c, v, DATE)
            elif h == "补贴":
                ws.write(r, c, v, MONEY)
            else:
                ws.write(r, c, v)
    wb.save(path)


# First full delivery: text ID numbers, Chinese text, a date, an ID-like text with
# leading zeros, an empty cell, an empty row, integer and negative decimal numbers.
write("full1.xls", HEADER, [
    ["510101199001011234", "张三", "一级", datetime.date(2023, 5, 17), "0012345", 1234.5],
    ["510101199202022345", "李四", "二级", datetime.date(2020, 1, 2), "0000001", None],
    None,
    ["510101199303033456", "王五", "三级", None, "0099999", -12.34],
    ["510101199404044567", "钱七", "四级", datetime.date(1999, 12, 31), "0100000", 200],
])

# Second full delivery: 李四 changes level, 王五 is gone, 赵六 is new, columns reordered.
H2 = ["姓名", "身份证号", "残疾等级", "发证日期", "户编号", "补贴"]
write("full2.xls", H2, [
    ["张三", "510101199001011234", "一级", datetime.date(2023, 5, 17), "0012345", 1234.5],
    ["李四", "510101199202022345", "一级", datetime.date(2020, 1, 2), "0000001", None],
    ["钱七", "510101199404044567", "四级", datetime.date(1999, 12, 31), "0100000", 200],
    ["赵六", "510101199505055678", "二级", datetime.date(2024, 2, 29), "0000002", 88],
])

# Header cells B1:C1 merged into one.
write("merged.xls", HEADER, [
    ["510101199001011234", "张三", "一级", datetime.date(2023, 5, 17), "0012345", 1234.5],
], merge=(1, 2, "姓名"))

# A delivery cut off in transfer: the first 3000 bytes of full1.xls.
with open("full1.xls", "rb") as f:
    data = f.read()
with open("truncated.xls", "wb") as f:
    f.write(data[:3000])

# Typed columns (issue #12): the same delivery as typed.csv in the tests, with date
# cells, numbers with formats ("#,##0.00", "0.0") and integers.
TYPED = ["身份证号", "姓名", "发证日期", "补贴", "人数"]
AMOUNT = xlwt.easyxf(num_format_str="#,##0.00")
ONE = xlwt.easyxf(num_format_str="0.0")


def write_typed(path, rows):
    wb = xlwt.Workbook(encoding="utf-8")
    ws = wb.add_sheet("Sheet1")
    for c, h in enumerate(TYPED):
        ws.write(0, c, h)
    for r, row in enumerate(rows, start=1):
        for c, v in enumerate(row):
            if v is None:
                continue
            if isinstance(v, datetime.date):
                ws.write(r, c, v, DATE)
            elif isinstance(v, tuple):  # (number, style)
                ws.write(r, c, v[0], v[1])
            else:
                ws.write(r, c, v)
    wb.save(path)


write_typed("typed.xls", [
    ["510101199001011234", "张三", datetime.date(2023, 5, 17), (1234.5, AMOUNT), 3],
    ["510101199202022345", "李四", datetime.date(2020, 1, 2), (2657, ONE), 2],
    ["510101199303033456", "王五", datetime.date(2019, 3, 1), 0, 1],
    ["510101199404044567", "钱七", datetime.date(2019, 1, 1), (12.3, AMOUNT), 4],
])

# The next delivery with bad rows (see TestBadRowsNeverDelete): a date that is no
# date, a value longer than the test's field limit, a cell right of the header, two
# rows of one key with different values, and a row without a key.
write_typed("typed-bad.xls", [
    ["510101199001011234", "张三", "2023-02-30", (1234.5, AMOUNT), 3],
    ["510101199202022345", "李" * 40, datetime.date(2020, 1, 2), (2657, ONE), 2],
    ["510101199303033456", "王五", datetime.date(2019, 3, 1), 0, 1, "多余"],
    ["510101199404044567", "钱七", datetime.date(2019, 1, 1), (12.3, AMOUNT), 4],
    ["510101199404044567", "钱七", datetime.date(2019, 1, 1), (99, AMOUNT), 4],
    [None, "无名", datetime.date(2019, 1, 1), 1, 1],
])
