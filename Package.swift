// swift-tools-version:6.0
import PackageDescription

// The kernels: no bounds checks in release, whole-module optimisation.
let kernelFlags: [SwiftSetting] = [
    .unsafeFlags(["-Ounchecked", "-wmo"], .when(configuration: .release))
]

let package = Package(
    name: "cyclegand",
    platforms: [.macOS(.v13)],
    products: [
        .executable(name: "cyclegand", targets: ["cyclegand"])
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.5.0"),
        .package(url: "https://github.com/apple/swift-log", from: "1.6.0"),
        .package(url: "https://github.com/apple/swift-nio", from: "2.80.0"),
        .package(url: "https://github.com/weichsel/ZIPFoundation", from: "0.9.19"),
    ],
    targets: [
        // libvips (Debian: libvips-dev). OpenBLAS is loaded at run time (Tensor/BLAS.swift).
        .systemLibrary(name: "CVipsSystem", path: "Sources/CVipsSystem", pkgConfig: "vips"),
        // libinotifytools for the watch folders (Debian: libinotifytools0-dev; no .pc file).
        .systemLibrary(
            name: "CInotifyTools", path: "Sources/CInotifyTools", providers: [.apt(["libinotifytools0-dev"])]),
        // Fixed-arity wrappers around libvips' variadic API.
        .target(name: "CVips", dependencies: ["CVipsSystem"]),

        // The one atomic file writer, output format and quality check every part shares.
        .target(name: "FileOutput"),
        // Winograd's transforms in C, compiled for AVX-512, AVX2 and baseline x86-64; the CPU picks at load time.
        .target(name: "CKernels", cSettings: [.unsafeFlags(["-O3"])]),
        .target(name: "Tensor", dependencies: ["CKernels"], swiftSettings: kernelFlags),
        .target(name: "CycleGAN", dependencies: ["Tensor"], swiftSettings: kernelFlags),
        .target(
            name: "Models",
            dependencies: [
                "CycleGAN", "Tensor", "FileOutput", .product(name: "ZIPFoundation", package: "ZIPFoundation"),
            ]
        ),
        .target(
            name: "Imaging", dependencies: ["CVips", "Tensor", "CycleGAN", "FileOutput"], swiftSettings: kernelFlags),
        // The CycleGAN trainer: data, losses and steps, checkpoints, reports.
        .target(
            name: "Training", dependencies: ["Tensor", "CycleGAN", "Models", "Imaging", "CVips"],
            swiftSettings: kernelFlags),
        .target(
            name: "Daemon",
            // No model or image code: the real translator and model catalog (module Translation)
            // are plugged in by the executable (Sources/cyclegand/ServeCommand.swift). Tensor only
            // for `ThreadShare` and `Compute`: the kernels read the grants as they run.
            dependencies: [
                "CInotifyTools", "FileOutput", "Tensor",
                .product(name: "Logging", package: "swift-log"),
            ]
        ),
        .target(
            name: "Control",
            dependencies: [
                "Daemon", "FileOutput",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
            ]
        ),
        // The daemon's trainer: `finetune` jobs run Training's Trainer on a model of the store.
        .target(name: "FineTuning", dependencies: ["Daemon", "Training", "Models", "Imaging", "CycleGAN", "Tensor", "FileOutput"]),
        // The daemon's translator and model catalog: generators from the models store, run by Imaging.
        .target(
            name: "Translation", dependencies: ["Daemon", "Models", "Imaging", "CycleGAN", "Tensor", "FileOutput"]),
        .executableTarget(
            name: "cyclegand",
            dependencies: [
                "Tensor", "CycleGAN", "Models", "Imaging", "Training", "Daemon", "Control", "Translation", "FineTuning",
                "FileOutput",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Logging", package: "swift-log"),
            ]
        ),

        .testTarget(name: "TensorTests", dependencies: ["Tensor", "CKernels", "Models"]),
        .testTarget(name: "CycleGANTests", dependencies: ["CycleGAN", "Models", "Imaging"]),
        .testTarget(name: "ModelsTests", dependencies: ["Models", "CycleGAN"]),
        .testTarget(name: "ImagingTests", dependencies: ["Imaging", "CycleGAN", "Models"]),
        .testTarget(name: "TrainingTests", dependencies: ["Training", "Tensor", "CycleGAN", "Models", "Imaging"]),
        .testTarget(name: "DaemonTests", dependencies: ["Daemon", "Translation", "Tensor", "FileOutput"]),
        .testTarget(name: "ControlTests", dependencies: ["Control", "FileOutput", "Training"]),
    ]
)
