using System.Globalization;
using Appliance.Crush.Model;

namespace Appliance.Crush.Text;

/// <summary>
/// Parses Ceph's CRUSH map text format (the input of `crushtool -c`, the output of `crushtool -d`) into a
/// <see cref="CrushMapDefinition"/>. Pure: text in, definition out. Every error is a <see cref="CrushMapException"/>
/// naming the line and column.
/// </summary>
public static class CrushMapParser
{
    /// <summary>Names longer than this are refused (Ceph keeps them in small fixed buffers in places).</summary>
    private const int MaxNameLength = 256;

    /// <summary>Parses and compiles a map text.</summary>
    public static CrushMap ParseMap(string text) => CrushMap.Compile(Parse(text));

    /// <summary>Parses a map text into its definition (no id assignment or name resolution yet).</summary>
    public static CrushMapDefinition Parse(string text)
    {
        ArgumentNullException.ThrowIfNull(text);
        var p = new Parser(Tokenize(text));
        return p.ParseFile();
    }

    private readonly record struct Token(string Text, int Line, int Column)
    {
        public SourcePosition Pos => new(Line, Column);
    }

    private static List<Token> Tokenize(string text)
    {
        var tokens = new List<Token>();
        int line = 1, col = 1, i = 0;
        while (i < text.Length)
        {
            var ch = text[i];
            if (ch == '\n')
            {
                line++;
                col = 1;
                i++;
                continue;
            }
            if (char.IsWhiteSpace(ch))
            {
                i++;
                col++;
                continue;
            }
            if (ch == '#')
            {
                while (i < text.Length && text[i] != '\n')
                {
                    i++;
                }
                continue;
            }
            if (ch is '{' or '}')
            {
                tokens.Add(new Token(ch.ToString(), line, col));
                i++;
                col++;
                continue;
            }
            if (char.IsControl(ch))
            {
                throw new CrushMapException($"unexpected control character U+{(int)ch:X4}", new SourcePosition(line, col));
            }
            var start = i;
            var startCol = col;
            while (i < text.Length && !char.IsWhiteSpace(text[i]) && text[i] is not ('{' or '}' or '#') && !char.IsControl(text[i]))
            {
                i++;
                col++;
            }
            tokens.Add(new Token(text[start..i], line, startCol));
        }
        tokens.Add(new Token("", line, col)); // end marker
        return tokens;
    }

    private sealed class Parser(List<Token> tokens)
    {
        private int _i;
        private readonly HashSet<string> _classesSeen = new(StringComparer.Ordinal);
        private readonly List<string> _classOrder = [];

        private Token Peek => tokens[_i];
        private bool AtEnd => _i >= tokens.Count - 1;

        private Token Next()
        {
            var t = tokens[_i];
            if (!AtEnd)
            {
                _i++;
            }
            return t;
        }

        private static string Describe(Token t) => t.Text.Length == 0 ? "the end of the text" : $"'{Truncate(t.Text)}'";

        private static string Truncate(string s) => s.Length > 40 ? s[..40] + "..." : s;

        private Token Expect(string what)
        {
            var t = Next();
            if (t.Text.Length == 0)
            {
                throw new CrushMapException($"expected {what}, found the end of the text", t.Pos);
            }
            return t;
        }

        private void ExpectWord(string word)
        {
            var t = Next();
            if (t.Text != word)
            {
                throw new CrushMapException($"expected '{word}', found {Describe(t)}", t.Pos);
            }
        }

        private string Name(string what)
        {
            var t = Expect(what);
            if (t.Text is "{" or "}")
            {
                throw new CrushMapException($"expected {what}, found {Describe(t)}", t.Pos);
            }
            if (t.Text.Length > MaxNameLength)
            {
                throw new CrushMapException($"{what} is longer than {MaxNameLength} characters", t.Pos);
            }
            return t.Text;
        }

        private int Int(string what)
        {
            var t = Expect(what);
            if (!int.TryParse(t.Text, NumberStyles.AllowLeadingSign, CultureInfo.InvariantCulture, out var v))
            {
                throw new CrushMapException($"expected {what} (an integer), found {Describe(t)}", t.Pos);
            }
            return v;
        }

        private void NoteClass(string name)
        {
            if (_classesSeen.Add(name))
            {
                _classOrder.Add(name);
            }
        }

        public CrushMapDefinition ParseFile()
        {
            var def = new CrushMapDefinition();
            var tunables = CrushTunables.Legacy;
            while (!AtEnd)
            {
                var t = Peek;
                switch (t.Text)
                {
                    case "tunable":
                        {
                            Next();
                            var nameTok = Expect("a tunable name");
                            var value = Int("the tunable's value");
                            tunables = tunables.With(nameTok.Text, value)
                                ?? throw new CrushMapException(
                                    $"unknown tunable '{Truncate(nameTok.Text)}'; known: {string.Join(", ", CrushTunables.Names)}", nameTok.Pos);
                            def.WrittenTunables.Add(nameTok.Text);
                            break;
                        }
                    case "device":
                        {
                            Next();
                            var idTok = Peek;
                            var id = Int("a device id");
                            var name = Name("a device name");
                            string? cls = null;
                            if (Peek.Text == "class")
                            {
                                Next();
                                cls = Name("a class name");
                                NoteClass(cls);
                            }
                            def.Devices.Add(new DeviceDef(id, name, cls, idTok.Pos));
                            break;
                        }
                    case "type":
                        {
                            Next();
                            var idTok = Peek;
                            var id = Int("a type id");
                            var name = Name("a type name");
                            def.Types.Add(new TypeDef(id, name, idTok.Pos));
                            break;
                        }
                    case "rule":
                        Next();
                        def.BucketsBeforeFirstRule ??= def.Buckets.Count;
                        def.Rules.Add(ParseRule(t));
                        break;
                    case "choose_args":
                        throw new CrushMapException("choose_args (weight sets) are not supported; remove the choose_args section", t.Pos);
                    case "{" or "}":
                        throw new CrushMapException($"unexpected {Describe(t)}", t.Pos);
                    default:
                        def.Buckets.Add(ParseBucket());
                        break;
                }
            }
            def.Tunables = tunables;
            def.ClassOrder = _classOrder;
            return def;
        }

        private BucketDef ParseBucket()
        {
            var typeTok = Next();
            var name = Name("a bucket name");
            var open = Next();
            if (open.Text != "{")
            {
                throw new CrushMapException(
                    $"expected '{{' after '{Truncate(typeTok.Text)} {Truncate(name)}', found {Describe(open)} (a line must start with tunable, device, type, rule or a bucket type)",
                    open.Pos);
            }
            var b = new BucketDef { TypeName = typeTok.Text, Name = name, Position = typeTok.Pos };
            var sawAlg = false;
            while (true)
            {
                var t = Expect("'}' to close bucket '" + Truncate(name) + "'");
                switch (t.Text)
                {
                    case "}":
                        if (!sawAlg)
                        {
                            throw new CrushMapException($"bucket '{name}' has no 'alg' line (use 'alg straw2')", t.Pos);
                        }
                        return b;
                    case "id":
                        {
                            var id = Int("a bucket id");
                            if (Peek.Text == "class")
                            {
                                Next();
                                var clsTok = Peek;
                                var cls = Name("a class name");
                                NoteClass(cls);
                                b.ShadowIds.Add(new ShadowIdDef(id, cls, clsTok.Pos));
                            }
                            else
                            {
                                if (b.Id is not null)
                                {
                                    throw new CrushMapException($"bucket '{name}' has two id lines", t.Pos);
                                }
                                b.Id = id;
                            }
                            break;
                        }
                    case "alg":
                        {
                            var algTok = Expect("a bucket algorithm");
                            b.Alg = algTok.Text switch
                            {
                                "uniform" => BucketAlg.Uniform,
                                "list" => BucketAlg.List,
                                "tree" => BucketAlg.Tree,
                                "straw" => BucketAlg.Straw,
                                "straw2" => BucketAlg.Straw2,
                                _ => throw new CrushMapException($"unknown bucket algorithm {Describe(algTok)}; use uniform, list, tree, straw or straw2", algTok.Pos),
                            };
                            sawAlg = true;
                            break;
                        }
                    case "hash":
                        {
                            var hashTok = Expect("a hash id");
                            b.Hash = hashTok.Text switch
                            {
                                "rjenkins1" or "0" => 0,
                                _ => throw new CrushMapException($"unknown hash {Describe(hashTok)}; the only hash is 0 (rjenkins1)", hashTok.Pos),
                            };
                            break;
                        }
                    case "item":
                        {
                            var itemTok = Peek;
                            var itemName = Name("an item name");
                            uint? weight = null;
                            int? pos = null;
                            while (Peek.Text is "weight" or "pos")
                            {
                                var kw = Next();
                                if (kw.Text == "weight")
                                {
                                    if (weight is not null)
                                    {
                                        throw new CrushMapException("weight is given twice", kw.Pos);
                                    }
                                    weight = Weight(itemName);
                                }
                                else
                                {
                                    if (pos is not null)
                                    {
                                        throw new CrushMapException("pos is given twice", kw.Pos);
                                    }
                                    pos = Int("an item position");
                                }
                            }
                            b.Items.Add(new ItemDef(itemName, weight, pos, itemTok.Pos));
                            break;
                        }
                    default:
                        throw new CrushMapException(
                            $"unexpected {Describe(t)} in bucket '{Truncate(name)}'; expected id, alg, hash, item or '}}'", t.Pos);
                }
            }
        }

        // Weights are parsed in single precision and truncated after scaling, as crushtool does (3.638 -> 238419).
        private uint Weight(string itemName)
        {
            var t = Expect("a weight");
            if (!float.TryParse(t.Text, NumberStyles.AllowDecimalPoint | NumberStyles.AllowLeadingSign | NumberStyles.AllowExponent,
                    CultureInfo.InvariantCulture, out var f) || !float.IsFinite(f))
            {
                throw new CrushMapException($"expected a weight (a number such as 1.0), found {Describe(t)}", t.Pos);
            }
            if (f < 0)
            {
                throw new CrushMapException($"weight {t.Text} of '{Truncate(itemName)}' is negative", t.Pos);
            }
            if (f > 65535.0f)
            {
                throw new CrushMapException($"weight {t.Text} of '{Truncate(itemName)}' is above 65535, the largest 16.16 fixed-point weight", t.Pos);
            }
            return (uint)(f * 65536.0f);
        }

        private RuleDef ParseRule(Token ruleTok)
        {
            string name;
            if (Peek.Text == "{")
            {
                name = "";
            }
            else
            {
                name = Name("a rule name");
            }
            var open = Next();
            if (open.Text != "{")
            {
                throw new CrushMapException($"expected '{{' after 'rule {Truncate(name)}', found {Describe(open)}", open.Pos);
            }
            var rule = new RuleDef { Name = name, Position = ruleTok.Pos };
            var sawId = false;
            while (true)
            {
                var t = Expect("'}' to close rule '" + Truncate(name) + "'");
                switch (t.Text)
                {
                    case "}":
                        if (!sawId)
                        {
                            throw new CrushMapException($"rule '{name}' has no 'id' line", t.Pos);
                        }
                        if (name.Length == 0)
                        {
                            return new RuleDef
                            {
                                Name = "rule" + rule.Id.ToString(CultureInfo.InvariantCulture),
                                Id = rule.Id,
                                Type = rule.Type,
                                MinSize = rule.MinSize,
                                MaxSize = rule.MaxSize,
                                Steps = rule.Steps,
                                Position = rule.Position,
                            };
                        }
                        return rule;
                    case "id" or "ruleset":
                        rule.Id = Int("a rule id");
                        sawId = true;
                        break;
                    case "type":
                        {
                            var typeTok = Expect("a rule type");
                            rule.Type = typeTok.Text switch
                            {
                                "replicated" => 1,
                                "raid4" => 2,
                                "erasure" => 3,
                                "msr_firstn" => 4,
                                "msr_indep" => 5,
                                _ when int.TryParse(typeTok.Text, NumberStyles.None, CultureInfo.InvariantCulture, out var n) => n,
                                _ => throw new CrushMapException($"unknown rule type {Describe(typeTok)}; use replicated or erasure", typeTok.Pos),
                            };
                            if (rule.Type is 4 or 5)
                            {
                                throw new CrushMapException("msr rules are not supported", typeTok.Pos);
                            }
                            break;
                        }
                    case "min_size":
                        rule.MinSize = Int("min_size");
                        break;
                    case "max_size":
                        rule.MaxSize = Int("max_size");
                        break;
                    case "step":
                        rule.Steps.Add(ParseStep(name));
                        break;
                    default:
                        throw new CrushMapException(
                            $"unexpected {Describe(t)} in rule '{Truncate(name)}'; expected id, type, min_size, max_size, step or '}}'", t.Pos);
                }
            }
        }

        private StepDef ParseStep(string ruleName)
        {
            var t = Expect("a step");
            switch (t.Text)
            {
                case "take":
                    {
                        var item = Name("the bucket to take");
                        string? cls = null;
                        if (Peek.Text == "class")
                        {
                            Next();
                            cls = Name("a class name");
                        }
                        return new StepDef(RuleOp.Take, 0, item, cls, Position: t.Pos);
                    }
                case "emit":
                    return new StepDef(RuleOp.Emit, Position: t.Pos);
                case "set_choose_tries":
                    return new StepDef(RuleOp.SetChooseTries, Int("a number of tries"), Position: t.Pos);
                case "set_chooseleaf_tries":
                    return new StepDef(RuleOp.SetChooseLeafTries, Int("a number of tries"), Position: t.Pos);
                case "set_choose_local_tries":
                    return new StepDef(RuleOp.SetChooseLocalTries, Int("a number of tries"), Position: t.Pos);
                case "set_choose_local_fallback_tries":
                    return new StepDef(RuleOp.SetChooseLocalFallbackTries, Int("a number of tries"), Position: t.Pos);
                case "set_chooseleaf_vary_r":
                    return new StepDef(RuleOp.SetChooseLeafVaryR, Int("a value"), Position: t.Pos);
                case "set_chooseleaf_stable":
                    return new StepDef(RuleOp.SetChooseLeafStable, Int("a value"), Position: t.Pos);
                case "choose" or "chooseleaf":
                    {
                        var leaf = t.Text == "chooseleaf";
                        var modeTok = Expect("firstn or indep");
                        var op = (modeTok.Text, leaf) switch
                        {
                            ("firstn", false) => RuleOp.ChooseFirstN,
                            ("indep", false) => RuleOp.ChooseIndep,
                            ("firstn", true) => RuleOp.ChooseLeafFirstN,
                            ("indep", true) => RuleOp.ChooseLeafIndep,
                            _ => throw new CrushMapException($"expected firstn or indep, found {Describe(modeTok)}", modeTok.Pos),
                        };
                        var n = Int("a count");
                        ExpectWord("type");
                        var type = Name("a type name");
                        return new StepDef(op, n, TypeName: type, Position: t.Pos);
                    }
                default:
                    throw new CrushMapException(
                        $"unknown step {Describe(t)} in rule '{Truncate(ruleName)}'; expected take, choose, chooseleaf, emit or set_...", t.Pos);
            }
        }
    }
}
