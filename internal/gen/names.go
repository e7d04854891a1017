package gen

import "math/rand/v2"

// Name material (population.md): Han names are surname + 1–2 characters; Yi names start
// with a clan name; Tibetan names combine two common elements and repeat a lot, which is
// why names are weak keys.
var (
	hanSurnames = []string{"王", "李", "张", "刘", "陈", "杨", "黄", "赵", "周", "吴", "徐", "孙", "胡", "朱", "高",
		"林", "何", "郭", "马", "罗", "梁", "宋", "郑", "谢", "韩", "唐", "冯", "于", "董", "萧", "程", "曹", "袁", "邓",
		"许", "傅", "沈", "曾", "彭", "吕", "苏", "卢", "蒋", "蔡", "贾", "丁", "魏", "薛", "叶", "阎", "余", "潘", "杜",
		"戴", "夏", "钟", "汪", "田", "任", "姜", "范", "方", "石", "姚", "谭", "廖", "邹", "熊", "金", "陆", "郝", "孔",
		"白", "崔", "康", "毛", "邱", "秦", "江", "史", "顾", "侯", "邵", "孟", "龙", "万", "段", "雷", "钱", "汤", "尹",
		"黎", "易", "常", "武", "乔", "贺", "赖", "龚", "文", "向", "牟", "税", "苟", "母"}
	hanMale   = []string{"伟", "强", "军", "明", "勇", "华", "平", "刚", "林", "斌", "杰", "涛", "波", "辉", "超", "建", "国", "兵", "福", "贵", "成", "志", "德", "文", "洪", "海", "云", "春", "顺", "发", "清", "荣", "学", "永", "富", "全", "银", "才", "宇", "浩", "俊", "鹏", "川", "蜀"}
	hanFemale = []string{"芳", "英", "秀", "兰", "霞", "燕", "玉", "梅", "琴", "丽", "萍", "红", "艳", "娟", "敏", "静", "慧", "珍", "凤", "桂", "群", "莲", "翠", "琼", "蓉", "婷", "雪", "欣", "怡", "佳", "月", "菊", "香", "春", "会", "淑"}
	yiClans   = []string{"吉克", "阿苦", "沙马", "吉伍", "马海", "俄木", "阿西", "吉米", "曲比", "海来", "阿约", "勒格", "木乃", "瓦其", "阿于", "吉史", "巫其", "阿的", "孙子", "日火", "俄底", "吉吉"}
	yiMale    = []string{"石者", "阿支", "拉哈", "日格", "尔古", "木呷", "拉博", "伍各", "约哈", "子哈", "尔布", "石布", "呷呷", "拉且", "阿牛", "布都", "说", "体", "日"}
	yiFemale  = []string{"阿呷", "阿依", "尔呷", "石曲", "阿衣", "么么", "拉莫", "伍呷", "日古", "莫色", "阿果", "则莫", "妞", "嫫"}
	tibMale   = []string{"扎西", "次仁", "格桑", "泽仁", "多吉", "洛绒", "尼玛", "丹增", "降措", "贡布", "平措", "登珠", "仁青", "益西"}
	tibFemale = []string{"卓玛", "拉姆", "德吉", "央金", "泽仁", "次仁", "格桑", "曲珍", "措姆", "志玛", "益西", "尼玛", "仁青", "巴姆"}
	qiangSur  = []string{"王", "杨", "余", "何", "陈", "韩", "龙", "马", "赵", "毛", "苟", "母", "尔玛", "董"}
)

func pick(r *rand.Rand, s []string) string { return s[r.IntN(len(s))] }

// personName returns a name for the ethnic group. Han-style families share the
// surname, passed in for children of a Han-style head.
func personName(r *rand.Rand, ethnic string, male bool, surname string) string {
	switch ethnic {
	case "彝族":
		clan := surname
		if clan == "" {
			clan = pick(r, yiClans)
		}
		if male {
			return clan + pick(r, yiMale)
		}
		return clan + pick(r, yiFemale)
	case "藏族":
		if male {
			if r.IntN(3) == 0 {
				return pick(r, tibMale)
			}
			return pick(r, tibMale) + pick(r, tibMale)
		}
		if r.IntN(3) == 0 {
			return pick(r, tibFemale)
		}
		return pick(r, tibFemale) + pick(r, tibFemale)
	}
	if surname == "" {
		if ethnic == "羌族" {
			surname = pick(r, qiangSur)
		} else {
			surname = pick(r, hanSurnames)
		}
	}
	given := hanFemale
	if male {
		given = hanMale
	}
	if r.IntN(10) < 3 {
		return surname + pick(r, given)
	}
	return surname + pick(r, given) + pick(r, given)
}

// familyName extracts the part of a name children inherit: the Han surname (one
// character, or two for 尔玛-style) or the Yi clan; Tibetans have none.
func familyName(ethnic, name string) string {
	rs := []rune(name)
	switch ethnic {
	case "藏族":
		return ""
	case "彝族":
		if len(rs) >= 2 {
			return string(rs[:2])
		}
	}
	if len(rs) > 3 {
		return string(rs[:2])
	}
	return string(rs[:1])
}

// validMobile returns a random mobile number matching ^1[3-9]\d{9}$.
func validMobile(r *rand.Rand) string {
	b := make([]byte, 11)
	b[0] = '1'
	b[1] = byte('3' + r.IntN(7))
	for i := 2; i < 11; i++ {
		b[i] = byte('0' + r.IntN(10))
	}
	return string(b)
}
