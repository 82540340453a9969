using System.Diagnostics;
using System.Globalization;
using System.Security.Cryptography;
using Appliance.Bench.Common;
using Appliance.Platform.Crypto;

namespace Appliance.Bench.Crypto;

/// <summary>
/// AES-GCM on one core: our <see cref="AesGcmNi"/> beside the runtime's <see cref="AesGcm"/> (OpenSSL on Linux), the
/// cipher of the messenger's secure mode, for 4 KiB and 1 MiB messages, AES-128 and AES-256, encrypting (in place)
/// and decrypting with authentication. Rounds interleave the two, and each figure is the median of its rounds.
/// </summary>
public sealed class AesGcmBenchmark : IBenchmark
{
    public string Name => "aes-gcm";

    public string Description => "AES-GCM GB/s on one core, ours (AES-NI + VPCLMULQDQ) vs the runtime's (OpenSSL) [--seconds 1] [--rounds 3]";

    public Task<int> RunAsync(string[] args, CancellationToken ct)
    {
        var a = new BenchArgs(args);
        var seconds = a.Get("--seconds", 1.0);
        var rounds = Math.Max(1, a.Get("--rounds", 3));
        if (!AesGcmNi.IsSupported)
        {
            Console.WriteLine("aes-gcm: this CPU lacks AES-NI, VPCLMULQDQ or AVX-512BW; the messenger uses the runtime's AES-GCM here");
            return Task.FromResult(0);
        }
        Console.WriteLine($"aes-gcm: one core (encrypting in place, decrypting a sealed message into another buffer), {seconds} s per figure, median of {rounds} interleaved rounds");
        Console.WriteLine($"{"key",-8} {"message",-8} {"op",-8} {"ours GB/s",10} {"OpenSSL GB/s",13} {"ratio",6}");
        foreach (var keyBits in new[] { 128, 256 })
        {
            foreach (var size in new[] { 4096, 1 << 20 })
            {
                var key = RandomNumberGenerator.GetBytes(keyBits / 8);
                var nonce = new byte[AesGcmNi.NonceSize];
                var data = RandomNumberGenerator.GetBytes(size);
                var tag = new byte[AesGcmNi.TagSize];
                using var ours = new AesGcmNi(key);
                using var openssl = new AesGcm(key, AesGcmNi.TagSize);
                // Decryption opens one sealed message again and again (into another buffer: in place it would be
                // plain text after the first call).
                var sealedCopy = new byte[size];
                var sealedTag = new byte[AesGcmNi.TagSize];
                openssl.Encrypt(nonce, data, sealedCopy, sealedTag);
                var work = new byte[size];
                var results = new Dictionary<(string Op, bool Ours), List<double>>();
                for (var r = 0; r < rounds && !ct.IsCancellationRequested; r++)
                {
                    foreach (var mine in new[] { true, false })
                    {
                        Add(results, ("encrypt", mine), Rate(size, seconds, () =>
                        {
                            if (mine)
                            {
                                ours.Encrypt(nonce, data, data, tag);
                            }
                            else
                            {
                                openssl.Encrypt(nonce, data, data, tag);
                            }
                        }));
                        Add(results, ("decrypt", mine), Rate(size, seconds, () =>
                        {
                            if (mine)
                            {
                                ours.Decrypt(nonce, sealedCopy, sealedTag, work);
                            }
                            else
                            {
                                openssl.Decrypt(nonce, sealedCopy, sealedTag, work);
                            }
                        }));
                    }
                }
                foreach (var op in new[] { "encrypt", "decrypt" })
                {
                    var us = Stats.Median(results[(op, true)]);
                    var them = Stats.Median(results[(op, false)]);
                    Console.WriteLine($"{"AES-" + keyBits,-8} {(size >= 1 << 20 ? "1 MiB" : "4 KiB"),-8} {op,-8} {F(us),10} {F(them),13} {F(us / them),6}");
                }
            }
        }
        return Task.FromResult(0);
    }

    private static void Add(Dictionary<(string, bool), List<double>> results, (string, bool) key, double value)
    {
        if (!results.TryGetValue(key, out var list))
        {
            results[key] = list = [];
        }
        list.Add(value);
    }

    /// <summary>GB/s of <paramref name="op"/> on a message of <paramref name="size"/> bytes, after a warm-up.</summary>
    private static double Rate(int size, double seconds, Action op)
    {
        var warm = Stopwatch.StartNew();
        while (warm.Elapsed.TotalSeconds < Math.Min(0.2, seconds))
        {
            op();
        }
        long n = 0;
        var clock = Stopwatch.StartNew();
        while (clock.Elapsed.TotalSeconds < seconds)
        {
            op();
            n++;
        }
        return n * (double)size / clock.Elapsed.TotalSeconds / 1e9;
    }

    private static string F(double v) => v.ToString("0.00", CultureInfo.InvariantCulture);
}
