using Appliance.Crush.Mapping;
using Appliance.Crush.Model;
using Appliance.Crush.Placement;
using Appliance.Crush.Text;

namespace Appliance.Crush.Tests;

/// <summary>Invariants of the mapper that hold for every map: thread safety, no allocation, result shapes.</summary>
public class MapperPropertyTests
{
    private static CrushMap MapC() => MappingVectorTests.LoadMap("maps/c_rooms_racks_hosts.txt");

    [Fact]
    public void ConcurrentMapping_EqualsSequential()
    {
        var map = MapC();
        var mapper = new CrushMapper(map);
        var rw = map.DefaultReweights();
        const int count = 20000;
        var expected = new int[count * 3];
        var lengths = new int[count];
        var ws = new CrushWorkspace(mapper);
        for (var x = 0; x < count; x++)
        {
            lengths[x] = mapper.Map(0, x, 3, rw, expected.AsSpan(x * 3, 3), ws);
        }
        var actual = new int[count * 3];
        Parallel.For(0, 4, new ParallelOptions { MaxDegreeOfParallelism = 4 }, t =>
        {
            var local = new CrushWorkspace(mapper);
            // Interleaved ranges so the threads really run the same buckets at the same time.
            for (var x = t; x < count; x += 4)
            {
                var n = mapper.Map(0, x, 3, rw, actual.AsSpan(x * 3, 3), local);
                Assert.Equal(lengths[x], n);
            }
        });
        Assert.Equal(expected, actual);
    }

    [Theory]
    [InlineData("maps/c_rooms_racks_hosts.txt", 0, 3)]
    [InlineData("maps/d_device_classes.txt", 2, 6)]
    [InlineData("maps/b_3host_4osd.txt", 2, 6)]
    public void Map_DoesNotAllocate(string mapPath, int rule, int numRep)
    {
        var map = MappingVectorTests.LoadMap(mapPath);
        var mapper = new CrushMapper(map);
        var ws = new CrushWorkspace(mapper);
        var rw = map.DefaultReweights();
        var result = new int[numRep];
        var allocated = MinAllocation(() =>
        {
            var sum = 0;
            for (var x = 0; x < 20000; x++)
            {
                sum += mapper.Map(rule, x, numRep, rw, result, ws);
            }
            Assert.True(sum > 0);
        });
        Assert.Equal(0, allocated);
    }

    /// <summary>
    /// The fewest bytes one run of <paramref name="work"/> allocated on this thread over several runs. The runtime
    /// itself may allocate once while it re-compiles a hot method (tiered JIT); an allocation per mapping would show
    /// in every run.
    /// </summary>
    private static long MinAllocation(Action work)
    {
        var min = long.MaxValue;
        for (var attempt = 0; attempt < 6 && min != 0; attempt++)
        {
            var before = GC.GetAllocatedBytesForCurrentThread();
            work();
            min = Math.Min(min, GC.GetAllocatedBytesForCurrentThread() - before);
        }
        return min;
    }

    [Fact]
    public void LegacyPermutationFallback_DoesNotAllocate()
    {
        var path = Path.Combine(AppContext.BaseDirectory, "Data", "crushtool", "gen302.txt");
        var map = CrushMapParser.ParseMap(File.ReadAllText(path));
        var mapper = new CrushMapper(map);
        var ws = new CrushWorkspace(mapper);
        var rw = map.DefaultReweights();
        var result = new int[6];
        foreach (var r in map.Rules)
        {
            for (var x = 0; x < 300; x++)
            {
                mapper.Map(r.Id, x, 6, rw, result, ws); // warm up (JIT tiers)
            }
        }
        var ruleIds = map.Rules.Select(r => r.Id).ToArray(); // enumerating the interface would allocate
        Assert.Equal(0, MinAllocation(() =>
        {
            foreach (var id in ruleIds)
            {
                for (var x = 0; x < 2000; x++)
                {
                    mapper.Map(id, x, 6, rw, result, ws);
                }
            }
        }));
    }

    [Fact]
    public void ResultShapes_FirstnDistinct_IndepFullLength_OutDevicesNeverChosen()
    {
        var map = MapC();
        var mapper = new CrushMapper(map);
        var ws = new CrushWorkspace(mapper);
        var rw = map.DefaultReweights();
        rw[5] = 0; // out
        var result = new int[8];
        foreach (var rule in map.Rules)
        {
            var indep = rule.Steps.Any(s => s.Op is RuleOp.ChooseIndep or RuleOp.ChooseLeafIndep);
            for (var numRep = 1; numRep <= 8; numRep++)
            {
                for (var x = 0; x < 300; x++)
                {
                    var n = mapper.Map(rule.Id, x, numRep, rw, result, ws);
                    Assert.InRange(n, 0, numRep);
                    var devices = result.Take(n).Where(d => d != CrushMapper.ItemNone).ToList();
                    Assert.Equal(devices.Count, devices.Distinct().Count());
                    Assert.DoesNotContain(5, devices);
                    Assert.All(devices, d => Assert.InRange(d, 0, map.MaxDevices - 1));
                    if (!indep)
                    {
                        Assert.DoesNotContain(CrushMapper.ItemNone, result.Take(n));
                    }
                }
            }
        }
    }

    [Fact]
    public void ZeroWeightDevice_IsNeverChosen_AndAllZeroBucketReturnsFirstItem()
    {
        // With modern tunables. (With legacy ones the local fallback permutation ignores weights and can pick a
        // zero-weight device, as Ceph does.)
        ZeroWeightCheck();
    }

    private static void ZeroWeightCheck()
    {
        var map = CrushMapParser.ParseMap("""
            tunable choose_local_tries 0
            tunable choose_local_fallback_tries 0
            tunable choose_total_tries 50
            tunable chooseleaf_descend_once 1
            device 0 osd.0
            device 1 osd.1
            device 2 osd.2
            type 0 osd
            type 1 host
            host h {
                alg straw2
                item osd.0 weight 1
                item osd.1 weight 0
                item osd.2 weight 1
            }
            host z {
                alg straw2
                item osd.1 weight 0
                item osd.2 weight 0
            }
            rule r { id 0 type replicated step take h step choose firstn 0 type osd step emit }
            rule zero { id 1 type replicated step take z step choose firstn 1 type osd step emit }
            """);
        var mapper = new CrushMapper(map);
        var ws = new CrushWorkspace(mapper);
        var rw = map.DefaultReweights();
        var result = new int[3];
        for (var x = 0; x < 1000; x++)
        {
            var n = mapper.Map(0, x, 3, rw, result, ws);
            Assert.Equal(2, n);
            Assert.DoesNotContain(1, result.Take(n));
            Assert.Equal(1, mapper.Map(1, x, 1, rw, result, ws));
            Assert.Equal(1, result[0]); // straw2 with all weights 0 picks the first item, as Ceph does
        }
    }

    [Fact]
    public void UnknownRuleOrZeroReplicas_GiveEmptyResult()
    {
        var map = MapC();
        var mapper = new CrushMapper(map);
        var ws = new CrushWorkspace(mapper);
        var result = new int[3];
        Assert.Equal(0, mapper.Map(999, 1, 3, map.DefaultReweights(), result, ws));
        Assert.Equal(0, mapper.Map(0, 1, 0, map.DefaultReweights(), result, ws));
        Assert.Throws<ArgumentException>(() => mapper.Map(0, 1, 4, map.DefaultReweights(), result, ws));
        Assert.Throws<ArgumentException>(() => mapper.Map(0, 1, 3, map.DefaultReweights(), result, new CrushWorkspace(new CrushMapper(map))));
    }

    [Fact]
    public void PoolPlacement_ActingSetAndPrimary()
    {
        var map = MapC();
        var mapper = new CrushMapper(map);
        var ws = new CrushWorkspace(mapper);
        var rw = map.DefaultReweights();
        var acting = new int[3];
        var pgNum = (uint)PoolPlacement.AutoPgCount(map.Devices.Count, 3);
        var pg = PoolPlacement.PgOf(PoolPlacement.ObjectHash("rbd_data.1234.0000000000000001"), pgNum);
        Assert.InRange(pg, 0u, pgNum - 1);
        var n = PoolPlacement.ActingSet(mapper, 0, 7, pg, pgNum, 3, rw, acting, ws);
        Assert.Equal(3, n);
        // The acting set is CRUSH's result for the pool's placement seed.
        var direct = new int[3];
        mapper.Map(0, unchecked((int)PoolPlacement.PlacementSeed(7, pg, pgNum)), 3, rw, direct, ws);
        Assert.Equal(direct, acting);
        Assert.Equal(acting[0], PoolPlacement.Primary(acting));
        Assert.Equal(4, PoolPlacement.Primary([CrushMapper.ItemNone, 4, 2]));
        Assert.Equal(-1, PoolPlacement.Primary([CrushMapper.ItemNone]));
    }

    [Fact]
    public void AddingZeroWeightDevice_MovesNothing_AddingWeightMovesSome()
    {
        var map = MappingVectorTests.LoadMap("maps/b_3host_4osd.txt");
        var rule = map.GetRule(0)!;
        var before = PlacementAnalysis.MapPgs(map, 0, 3, 512);
        var def = map.ToDefinition();
        PlacementAnalysis.AddDevice(def, "host-a", 0);
        var same = PlacementAnalysis.MapPgs(CrushMap.Compile(def), 0, 3, 512);
        Assert.Equal(0, PlacementAnalysis.ChangedFraction(before, same));
        def = map.ToDefinition();
        PlacementAnalysis.AddDevice(def, "host-a", 0x20000);
        var changedMap = CrushMap.Compile(def);
        var after = PlacementAnalysis.MapPgs(changedMap, 0, 3, 512);
        var fraction = PlacementAnalysis.ChangedFraction(before, after);
        Assert.InRange(fraction, 0.01, 0.9);
        var dist = PlacementAnalysis.Analyze(changedMap, changedMap.GetRule(0)!, 3, after);
        Assert.Equal(512 * 3, dist.Osds.Sum(o => o.Pgs));
        Assert.Equal(512 * 3, dist.Osds.Sum(o => o.FairPgs), 6);
        Assert.Equal(rule.Name, changedMap.GetRule(0)!.Name);
    }
}
