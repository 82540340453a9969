using System.Globalization;
using Appliance.Cli.Tests.Disks;
using Xunit.Abstractions;

namespace Appliance.Cli.Tests.Nodes;

/// <summary>
/// `join-token` and `join` with two "nodes" on this machine (each its own conf and data directory, its monitor on
/// its own loopback port): the second joins with the first's token, becomes the second monitor, adds a disk (an OSD
/// of CRUSH host n2); the token used again, and a forged one, are refused; `node ls` shows both nodes; `node rm`
/// takes the second out again; a token of 1 s used after it expired is refused too (tests/Monitor.Tests' JoinTokenTests
/// tests the expiry with an injected clock).
/// </summary>
public sealed class JoinTests(ITestOutputHelper output) : IDisposable
{
    private readonly TempDir _dir = new();

    [Fact]
    public async Task A_second_node_joins_with_a_token_once_becomes_a_monitor_and_adds_a_disk()
    {
        using var n1 = new TestNode(_dir, "n1", output);
        using var n2 = new TestNode(_dir, "n2", output);
        using var n3 = new TestNode(_dir, "n3", output);
        await n1.OkAsync("bootstrap", "--mon-ip", $"127.0.0.1:{TestNode.FreePort().ToString(CultureInfo.InvariantCulture)}", "--name", "n1");

        var (code, token, err) = await n1.RunAsync("join-token", "n2");
        Assert.True(code == 0, err);
        token = token.Trim();
        Assert.StartsWith("aplj1.", token);
        Assert.Contains("join token for node n2", err);

        // A forged token: the cluster's conf and the node's name, but a secret the monitors never saw.
        var forged = await RefusedTokenAsync(n3, ForgeSecret(token));
        Assert.Contains("do not know this token", forged);

        var port2 = TestNode.FreePort().ToString(CultureInfo.InvariantCulture);
        var joined = await n2.OkAsync("join", token, "--mon-ip", $"127.0.0.1:{port2}");
        Assert.Contains("node n2 joined cluster", joined);
        Assert.Contains($"mon.n2 added at 127.0.0.1:{port2}", joined);
        Assert.Contains("mon.n2 is a voting member", joined);
        Assert.Contains("2 monitors", joined);
        Assert.True(File.Exists(Path.Combine(n2.ConfDir, "client.node.n2.keyring")));
        Assert.Contains($"mon.n2 = 127.0.0.1:{port2}", await File.ReadAllTextAsync(Path.Combine(n2.ConfDir, "cluster.conf")));

        // The same token again, from a third machine: refused, saying it was used.
        var reused = await RefusedTokenAsync(n3, token);
        Assert.Contains("was used already", reused);
        Assert.False(File.Exists(Path.Combine(n3.ConfDir, "cluster.conf")));

        // A token that expired before it was used: refused by the monitors, saying so.
        var (shortCode, shortToken, shortErr) = await n1.RunAsync("join-token", "n4", "--ttl", "1");
        Assert.True(shortCode == 0, shortErr);
        var stated = System.Text.RegularExpressions.Regex.Match(shortErr, @"good until (\S+ [^\s;]+)");
        Assert.True(stated.Success, shortErr);
        // The monitors print the expiry to the second ("u"): it is past once that second is.
        var expiry = DateTimeOffset.ParseExact(stated.Groups[1].Value, "u", CultureInfo.InvariantCulture).AddSeconds(1);
        while (DateTimeOffset.UtcNow <= expiry)
        {
            await Task.Delay(100);
        }
        var expired = await RefusedTokenAsync(n3, shortToken.Trim());
        Assert.Contains("join token for node n4 expired at", expired);
        Assert.False(File.Exists(Path.Combine(n3.ConfDir, "cluster.conf")));

        // The joined node adds a disk: an OSD on host n2.
        var added = await n2.OkAsync("disk", "add", _dir.File("n2-disk.img"), "--size", "64M");
        Assert.Contains("host n2", added);
        Assert.Contains("osd.0 is up", added);

        var ls = await n1.OkAsync("node", "ls");
        Assert.Matches(@"n1 +127\.0\.0\.1:\d+ +- +-", ls);
        Assert.Matches($@"n2 +127\.0\.0\.1:{port2} +osd\.0\(up,in\) +client\.node\.n2", ls);

        // node rm from n1: n2's OSD out and drained (no pool), its key and monitor gone.
        var rm = await n1.OkAsync("node", "rm", "n2");
        Assert.Contains("osd.0 marked out", rm);
        Assert.Contains("mon.n2 removed", rm);
        var auth = await n1.OkAsync("auth", "ls");
        Assert.DoesNotContain("client.node.n2", auth);
        Assert.DoesNotContain("osd.0\n", auth);
        Assert.Contains("1 monitors", await n1.OkAsync("status"));
    }

    /// <summary>`join` with <paramref name="token"/> must be refused with exit 5; returns the message.</summary>
    private static async Task<string> RefusedTokenAsync(TestNode node, string token)
    {
        var (code, stdout, stderr) = await node.RunAsync("join", token, "--mon-ip", "127.0.0.1:1", "--timeout", "20");
        Assert.True(code == 5, $"join exited {code}, not 5 (permission denied): {stderr}\n{stdout}");
        return stderr;
    }

    /// <summary>The token with its secret replaced: decoded and encoded again by the program's own codec.</summary>
    private static string ForgeSecret(string token)
    {
        var t = Appliance.Cli.Commands.JoinToken.Decode(token);
        return (t with { Secret = Appliance.Wire.Auth.Secret.Generate() }).Encode();
    }

    public void Dispose() => _dir.Dispose();
}
