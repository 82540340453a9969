using System.Text;
using Appliance.Crush.Mapping;
using Appliance.Crush.Model;
using Appliance.Crush.Text;
using Xunit.Abstractions;

namespace Appliance.Crush.Tests;

/// <summary>
/// Random garbage and mutated maps: the parser either succeeds or throws CrushMapException — never another
/// exception type, never a hang. A map that parses can be mapped without any exception. Seed from CRUSH_FUZZ_SEED;
/// iterations from CRUSH_FUZZ_ITERATIONS (more under APPLIANCE_SOAK=1).
/// </summary>
public class ParserFuzzTests(ITestOutputHelper output)
{
    private static int Seed() =>
        int.TryParse(Environment.GetEnvironmentVariable("CRUSH_FUZZ_SEED"), out var s) ? s : Environment.TickCount & 0x7fffffff;

    private static int Iterations(int normal) =>
        int.TryParse(Environment.GetEnvironmentVariable("CRUSH_FUZZ_ITERATIONS"), out var n) ? n
        : TestSeed.Soak ? normal * 50 : normal;

    private static readonly string[] Words =
    [
        "device", "type", "tunable", "rule", "step", "take", "choose", "chooseleaf", "firstn", "indep", "emit", "id", "alg",
        "hash", "item", "weight", "pos", "class", "straw2", "straw", "uniform", "list", "tree", "host", "root", "osd",
        "{", "}", "0", "-1", "1", "3", "-7", "65536", "2147483647", "-2147483648", "99999999999", "1.5", "1e9", "NaN",
        "osd.0", "osd.1", "default", "hdd", "ssd", "set_choose_tries", "set_chooseleaf_tries", "\n", "#", "~", "choose_total_tries",
    ];

    private void Check(string text, int seed, int i)
    {
        CrushMap map;
        try
        {
            map = CrushMapParser.ParseMap(text);
        }
        catch (CrushMapException)
        {
            return;
        }
        catch (Exception e)
        {
            output.WriteLine($"seed {seed} iteration {i}: {e.GetType().Name} for text:\n{text}");
            throw;
        }
        // A map that compiles must map without exceptions, and write/parse back.
        var mapper = new CrushMapper(map);
        var ws = new CrushWorkspace(mapper);
        var result = new int[8];
        var rw = map.DefaultReweights();
        foreach (var rule in map.Rules)
        {
            for (var x = 0; x < 20; x++)
            {
                var n = mapper.Map(rule.Id, x, 8, rw, result, ws);
                Assert.InRange(n, 0, 8);
            }
        }
        CrushMapParser.ParseMap(CrushMapWriter.Write(map));
    }

    [Fact]
    public void RandomGarbage_OnlyCrushMapExceptions()
    {
        var seed = Seed();
        output.WriteLine($"CRUSH_FUZZ_SEED={seed}");
        var rng = new Random(seed);
        for (var i = 0; i < Iterations(2000); i++)
        {
            var sb = new StringBuilder();
            var n = rng.Next(0, 60);
            for (var k = 0; k < n; k++)
            {
                if (rng.Next(8) == 0)
                {
                    sb.Append((char)rng.Next(0, 0x3000));
                }
                else
                {
                    sb.Append(Words[rng.Next(Words.Length)]);
                }
                sb.Append(rng.Next(4) == 0 ? '\n' : ' ');
            }
            Check(sb.ToString(), seed, i);
        }
    }

    [Fact]
    public void MutatedMaps_OnlyCrushMapExceptions()
    {
        var seed = Seed();
        output.WriteLine($"CRUSH_FUZZ_SEED={seed}");
        var rng = new Random(seed);
        var maps = Directory.GetFiles(Vectors.PathOf("maps"), "*.txt").Select(File.ReadAllText).ToArray();
        for (var i = 0; i < Iterations(400); i++)
        {
            var tokens = maps[rng.Next(maps.Length)].Split([' ', '\t'], StringSplitOptions.None).ToList();
            var mutations = rng.Next(1, 5);
            for (var m = 0; m < mutations; m++)
            {
                var at = rng.Next(tokens.Count);
                switch (rng.Next(5))
                {
                    case 0:
                        tokens.RemoveAt(at);
                        break;
                    case 1:
                        tokens.Insert(at, Words[rng.Next(Words.Length)]);
                        break;
                    case 2:
                        tokens[at] = Words[rng.Next(Words.Length)];
                        break;
                    case 3:
                        tokens.Insert(at, tokens[rng.Next(tokens.Count)]);
                        break;
                    default:
                        tokens[at] = rng.Next(-100, 100).ToString(System.Globalization.CultureInfo.InvariantCulture);
                        break;
                }
            }
            Check(string.Join(' ', tokens), seed, i);
        }
    }
}
