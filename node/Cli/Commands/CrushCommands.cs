using System.CommandLine;
using System.Globalization;
using System.Text;
using Appliance.Cli.Common;
using Appliance.Crush.Mapping;
using Appliance.Crush.Model;
using Appliance.Crush.Placement;
using Appliance.Crush.Text;

namespace Appliance.Cli.Commands;

/// <summary>`appliance crush ...`: test a CRUSH map the way `crushtool --test` does, and analyze a change before making it.</summary>
public static class CrushCommands
{
    /// <summary>Far above any pool size (Ceph pools have at most a few dozen shards); bounds the work per input.</summary>
    private const int MaxNumRep = 1024;

    public static Command Create()
    {
        var crush = new Command("crush", "Compute CRUSH placements from a map in Ceph's text format (bit-compatible with crushtool).");
        crush.Subcommands.Add(Test());
        crush.Subcommands.Add(Analyze());
        return crush;
    }

    private static Command Test()
    {
        var map = new Argument<string>("map") { Description = "A CRUSH map in Ceph's text format (what 'crushtool -d' prints)." };
        var rule = new Option<string>("--rule") { Description = "The rule, by id or by name.", Required = true };
        var numRep = new Option<int>("--num-rep") { Description = "How many devices to ask for.", Required = true };
        var minX = new Option<int>("--min-x") { Description = "First input.", DefaultValueFactory = _ => 0 };
        var maxX = new Option<int>("--max-x") { Description = "Last input (inclusive).", DefaultValueFactory = _ => 1023 };
        var weight = new Option<string[]>("--weight")
        {
            Description = "OSD REWEIGHT: the reweight of one device (0 = out, 1 = in); may be repeated.",
            AllowMultipleArgumentsPerToken = true,
            Arity = ArgumentArity.ZeroOrMore,
        };
        var command = new Command("test", "Print the devices a rule chooses for each input x, one line 'x osd,osd,...' per input, as crushtool --test --show-mappings does (holes as 2147483647).")
        {
            map, rule, numRep, minX, maxX, weight,
        };
        command.SetAction(async (parse, ct) =>
        {
            var crushMap = Load(parse.GetRequiredValue(map));
            var r = FindRule(crushMap, parse.GetRequiredValue(rule));
            var n = parse.GetValue(numRep);
            if (n < 1 || n > MaxNumRep)
            {
                throw new CliException(ExitCodes.Usage, $"--num-rep {n}: ask for 1 to {MaxNumRep} devices.");
            }
            var from = parse.GetValue(minX);
            var to = parse.GetValue(maxX);
            if (to < from)
            {
                throw new CliException(ExitCodes.Usage, $"--max-x {to} is below --min-x {from}.");
            }
            var reweights = crushMap.DefaultReweights();
            ApplyWeights(reweights, parse.GetValue(weight) ?? []);
            WarnIfWeightless(crushMap, r, parse.InvocationConfiguration.Error);

            var mapper = new CrushMapper(crushMap);
            var ws = new CrushWorkspace(mapper);
            var result = new int[n];
            var output = parse.InvocationConfiguration.Output;
            var line = new StringBuilder(64);
            for (long x = from; x <= to; x++)
            {
                if (((x - from) & 0xFFFF) == 0)
                {
                    ct.ThrowIfCancellationRequested();
                }
                var count = mapper.Map(r.Id, (int)x, n, reweights, result, ws);
                line.Clear();
                line.Append(x).Append(' ');
                for (var i = 0; i < count; i++)
                {
                    if (i > 0)
                    {
                        line.Append(',');
                    }
                    line.Append(result[i]);
                }
                line.Append('\n');
                await output.WriteAsync(line.ToString());
            }
            await output.FlushAsync(ct);
            return ExitCodes.Ok;
        });
        return command;
    }

    private static Command Analyze()
    {
        var map = new Argument<string>("map") { Description = "A CRUSH map in Ceph's text format." };
        var rule = new Option<string>("--rule") { Description = "The pool's rule, by id or by name.", Required = true };
        var numRep = new Option<int>("--num-rep") { Description = "The pool's size (replicas, or k+m for erasure coding).", Required = true };
        var pgs = new Option<int>("--pgs") { Description = "The pool's PG count (0: choose it as the autoscaler would).", DefaultValueFactory = _ => 0 };
        var pool = new Option<int>("--pool") { Description = "The pool id (it seeds placement).", DefaultValueFactory = _ => 1 };
        var addOsd = new Option<string[]>("--add-osd") { Description = "HOST:WEIGHT: analyze adding a device of that weight to that bucket; may be repeated." };
        var removeOsd = new Option<int[]>("--remove-osd") { Description = "ID: analyze removing that device; may be repeated." };
        var command = new Command("analyze", "Show each device's PG count beside its weight-fair share and the spread, and for a change (--add-osd/--remove-osd) how many PGs would move.")
        {
            map, rule, numRep, pgs, pool, addOsd, removeOsd,
        };
        command.SetAction(async (parse, ct) =>
        {
            var crushMap = Load(parse.GetRequiredValue(map));
            var r = FindRule(crushMap, parse.GetRequiredValue(rule));
            var n = parse.GetValue(numRep);
            if (n < 1 || n > MaxNumRep)
            {
                throw new CliException(ExitCodes.Usage, $"--num-rep {n}: a pool has 1 to {MaxNumRep} replicas.");
            }
            var output = parse.InvocationConfiguration.Output;
            var pgCount = parse.GetValue(pgs);
            if (pgCount < 0 || pgCount > 1 << 22)
            {
                throw new CliException(ExitCodes.Usage, $"--pgs {pgCount}: give a PG count between 1 and {1 << 22} (or 0 to choose automatically).");
            }
            if (pgCount == 0)
            {
                var reachable = PlacementAnalysis.ReachableDeviceWeights(crushMap, r).Count;
                pgCount = PoolPlacement.AutoPgCount(reachable, n);
                await output.WriteLineAsync($"pgs: {pgCount} (automatic: {reachable} OSDs x 100 / size {n}, nearest power of two)");
            }
            var poolId = parse.GetValue(pool);
            WarnIfWeightless(crushMap, r, parse.InvocationConfiguration.Error);

            var before = PlacementAnalysis.MapPgs(crushMap, r.Id, n, pgCount, poolId);
            var dist = PlacementAnalysis.Analyze(crushMap, r, n, before);
            await output.WriteLineAsync($"rule {r.Id} ({r.Name}), size {n}, {pgCount} PGs, pool {poolId}");
            await PrintDistributionAsync(output, dist);

            var adds = parse.GetValue(addOsd) ?? [];
            var removes = parse.GetValue(removeOsd) ?? [];
            if (adds.Length == 0 && removes.Length == 0)
            {
                return ExitCodes.Ok;
            }
            var def = crushMap.ToDefinition();
            var changes = new List<string>();
            try
            {
                foreach (var id in removes)
                {
                    PlacementAnalysis.RemoveDevice(def, id);
                    changes.Add($"remove osd {id}");
                }
                foreach (var spec in adds)
                {
                    var colon = spec.LastIndexOf(':');
                    if (colon <= 0 || !float.TryParse(spec[(colon + 1)..], NumberStyles.Float, CultureInfo.InvariantCulture, out var w) || w < 0 || w > 100)
                    {
                        throw new CliException(ExitCodes.Usage, $"--add-osd {spec}: write it as HOST:WEIGHT, e.g. host3:1.819 (weight 0..100).");
                    }
                    var id = PlacementAnalysis.AddDevice(def, spec[..colon], (uint)(w * 65536.0f));
                    changes.Add($"add osd {id} to {spec[..colon]} with weight {w.ToString(CultureInfo.InvariantCulture)}");
                }
            }
            catch (CrushMapException e)
            {
                throw new CliException(ExitCodes.InvalidInput, e.Message);
            }
            CrushMap changed;
            try
            {
                changed = CrushMap.Compile(def);
            }
            catch (CrushMapException e)
            {
                throw new CliException(ExitCodes.InvalidInput, $"the changed map is not valid: {e.Message}");
            }
            var after = PlacementAnalysis.MapPgs(changed, r.Id, n, pgCount, poolId);
            var changedRule = changed.GetRule(r.Id)!;
            await output.WriteLineAsync();
            await output.WriteLineAsync($"after: {string.Join("; ", changes)}");
            await PrintDistributionAsync(output, PlacementAnalysis.Analyze(changed, changedRule, n, after));
            var fraction = PlacementAnalysis.ChangedFraction(before, after);
            var moved = PlacementAnalysis.MovedReplicas(before, after);
            await output.WriteLineAsync(string.Create(CultureInfo.InvariantCulture,
                $"PGs whose acting set changes: {fraction * pgCount:0} of {pgCount} ({fraction:P2}); replicas that move: {moved}"));
            return ExitCodes.Ok;
        });
        return command;
    }

    private static async Task PrintDistributionAsync(TextWriter output, Distribution dist)
    {
        await output.WriteLineAsync("osd       weight      pgs   fair share   deviation");
        foreach (var o in dist.Osds)
        {
            await output.WriteLineAsync(string.Create(CultureInfo.InvariantCulture,
                $"{o.Osd,-8} {o.Weight,8:0.000} {o.Pgs,8} {o.FairPgs,12:0.0} {(o.FairPgs > 0 ? o.Deviation.ToString("+0.0%;-0.0%;0.0%", CultureInfo.InvariantCulture) : "-"),11}"));
        }
        await output.WriteLineAsync(string.Create(CultureInfo.InvariantCulture,
            $"spread: max over {dist.MaxOver:+0.0%;-0.0%;0.0%}, max under {dist.MaxUnder:+0.0%;-0.0%;0.0%}, std dev {dist.StdDev:0.0} PGs"));
        if (dist.ShortMappings > 0)
        {
            await output.WriteLineAsync($"warning: {dist.ShortMappings} of {dist.Pgs} PGs got fewer than {dist.NumRep} devices (not enough failure domains or weight)");
        }
    }

    private static CrushMap Load(string path)
    {
        if (!File.Exists(path))
        {
            throw new CliException(ExitCodes.NotFound, $"{path} does not exist; give a CRUSH map in text form (decompile a binary one with 'crushtool -d MAP -o MAP.txt').");
        }
        var info = new FileInfo(path);
        if (info.Length > 64L << 20)
        {
            throw new CliException(ExitCodes.InvalidInput, $"{path} is {info.Length} bytes; a CRUSH map text is far smaller — is it the right file?");
        }
        string text;
        try
        {
            text = File.ReadAllText(path);
        }
        catch (UnauthorizedAccessException)
        {
            throw new CliException(ExitCodes.PermissionDenied, $"cannot read {path}: permission denied.");
        }
        catch (IOException e)
        {
            throw new CliException(ExitCodes.Failure, $"cannot read {path}: {e.Message}");
        }
        try
        {
            return CrushMapParser.ParseMap(text);
        }
        catch (CrushMapException e)
        {
            throw new CliException(ExitCodes.InvalidInput, $"{path}: {e.Message}");
        }
    }

    private static CrushRule FindRule(CrushMap map, string rule) =>
        map.FindRule(rule) ?? throw new CliException(ExitCodes.InvalidInput,
            $"the map has no rule '{rule}'; its rules are: {(map.Rules.Count == 0 ? "(none)" : string.Join(", ", map.Rules.Select(r => $"{r.Id} ({r.Name})")))}.");

    private static void ApplyWeights(uint[] reweights, string[] pairs)
    {
        if (pairs.Length % 2 != 0)
        {
            throw new CliException(ExitCodes.Usage, "--weight takes two values, the OSD id and its reweight: --weight 5 0.5");
        }
        for (var i = 0; i < pairs.Length; i += 2)
        {
            if (!int.TryParse(pairs[i], NumberStyles.None, CultureInfo.InvariantCulture, out var osd))
            {
                throw new CliException(ExitCodes.Usage, $"--weight {pairs[i]} {pairs[i + 1]}: the first value is an OSD id (0, 1, ...).");
            }
            if (!float.TryParse(pairs[i + 1], NumberStyles.Float, CultureInfo.InvariantCulture, out var f) || !float.IsFinite(f))
            {
                throw new CliException(ExitCodes.Usage, $"--weight {pairs[i]} {pairs[i + 1]}: the second value is a reweight between 0 and 1.");
            }
            if (osd >= reweights.Length)
            {
                throw new CliException(ExitCodes.InvalidInput, $"--weight {osd}: the map has no device {osd} (devices are 0..{reweights.Length - 1}).");
            }
            // As crushtool: single-precision product, truncated, clamped to 0..1.
            var w = (long)(f * 65536.0f);
            reweights[osd] = (uint)Math.Clamp(w, 0, 0x10000);
        }
    }

    private static void WarnIfWeightless(CrushMap map, CrushRule rule, TextWriter error)
    {
        var weights = PlacementAnalysis.ReachableDeviceWeights(map, rule);
        if (weights.Count == 0)
        {
            error.WriteLine($"warning: rule {rule.Id} ({rule.Name}) reaches no device; every mapping will be empty.");
        }
        else if (weights.Values.All(w => w == 0))
        {
            error.WriteLine($"warning: every device rule {rule.Id} ({rule.Name}) reaches has CRUSH weight 0; placements are not weighted (crushtool behaves the same).");
        }
    }
}
