// Imports that esbuild understands and TypeScript must be told about.
declare module "*.css";
